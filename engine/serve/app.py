"""The FastAPI application: ``/v1/stream`` (WebSocket, one per stream), ``/healthz``, ``/readyz`` and
``/metrics``. ``create_app`` is used as is by ``python -m engine.serve`` (uvicorn) and by the Ray Serve
deployment (``engine/serve/ray_app.py``)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from engine.config import EngineConfig
from engine.core.memory import trim_every
from engine.core.shared import SharedModels
from engine.serve.admission import Admission, Decision, LoadMonitor
from engine.serve.config import ServeConfig
from engine.serve.cpu_share import CpuShare
from engine.serve.metrics import ServeMetrics
from engine.serve.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TRY_LATER,
    SERVER_SHUTDOWN,
    VERSION,
    close_reason,
)
from engine.serve.session import StreamSession

log = logging.getLogger("engine.serve")
STREAM_PATH = "/v1/stream"
STATIC = Path(__file__).with_name("static")  # the live page: served as is, no CDN, no build step
# The page loads only from this server; the WebSocket is same-origin.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
    "connect-src 'self' ws: wss:; object-src 'none'; frame-ancestors 'none'"
)
# Browsers cannot set Authorization on a WebSocket: a page offers these subprotocols instead.
SUBPROTOCOL, BEARER_PROTOCOL = "emotion.v1", "bearer."


class Service:
    """What the routes share: settings, the loaded models, admission, metrics, the live sessions."""

    def __init__(self, cfg: ServeConfig, engine_cfg: EngineConfig | None = None) -> None:
        # OpenCV's own pixel limit (read at its first decode) backs up the header check of every image.
        os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(cfg.max_image_pixels))
        self.cfg = cfg
        self.engine_cfg = engine_cfg or cfg.build_engine_config()
        self.models: SharedModels | None = None  # loaded at application startup
        self.metrics = ServeMetrics()
        self.cpu = CpuShare()
        self.metrics.capacity.set(cfg.max_streams)
        self.monitor = LoadMonitor(cfg.load_window_s)
        self.admission = Admission(
            cfg.max_streams, cfg.e2e_budget_ms, cfg.max_cpu, self.monitor, forecast=cfg.forecast_cpu
        )
        self.sessions: set[StreamSession] = set()
        self.pending = 0  # sockets connected whose start message is not in yet
        self.draining = False

    def authorised(self, header: str | None) -> bool:
        if self.cfg.token is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        ok = hmac.compare_digest(value.strip().encode(), self.cfg.token.encode())  # constant time
        return ok and scheme.lower() == "bearer"

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Browsers send Origin: the server's own pages and the allow-list may open streams; other
        clients send none. Without this, any web page could reach a server on 127.0.0.1."""
        if origin is None:
            return True
        allowed = self.cfg.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        return host is not None and urlsplit(origin).netloc == host

    def check(self) -> Decision:
        if self.draining:
            return Decision(False, "server draining: it is shutting down, connect to another", "draining")
        return self.admission.check()

    def admit(self) -> Decision:
        """A started stream asks for a slot (call ``release`` when it ends)."""
        d = self.check() if self.draining else self.admission.try_admit()
        if d.admitted:
            self.metrics.active.inc()
            self.metrics.streams.inc()
        return d

    def release(self) -> None:
        self.admission.release()
        self.metrics.active.dec()

    async def stream(self, ws: WebSocket) -> None:
        if not self.origin_allowed(ws.headers.get("origin"), ws.headers.get("host")):
            self.metrics.rejections.labels("origin").inc()
            log.warning("refused a WebSocket from origin %r", ws.headers.get("origin"))
            await ws.close(CLOSE_POLICY)  # before the handshake completes: HTTP 403
            return
        offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        bearer = next((p[len(BEARER_PROTOCOL) :] for p in offered if p.startswith(BEARER_PROTOCOL)), None)
        await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        header = ws.headers.get("authorization") or (f"Bearer {bearer}" if bearer else None)
        if not self.authorised(header):
            self.metrics.rejections.labels("auth").inc()
            await _refuse(
                ws, CLOSE_POLICY, "unauthorized: send the server's token as 'Authorization: Bearer <token>'"
            )
            return
        if self.draining or self.pending >= self.cfg.max_pending:
            d = self.check()
            if d.admitted:  # not draining: too many sockets are waiting to start
                d = Decision(False, f"too many connections waiting to start: {self.pending}", "pending")
            self.metrics.rejections.labels(d.kind).inc()
            await _refuse(ws, CLOSE_TRY_LATER, d.reason)
            return
        session = StreamSession(ws, self)
        self.sessions.add(session)
        try:
            close = await session.run()
        finally:
            self.sessions.discard(session)
        if close is not None:
            await session.close(*close)

    async def drain(self, drain_s: float) -> None:
        """Stop admitting, let live streams run for up to ``drain_s``, then end each one: its last window,
        final event and summary, then a close with 1001 "server shutting down"."""
        self.draining = True
        self.metrics.draining.set(1)
        log.warning("draining: %d stream(s) live, closing them in at most %g s", len(self.sessions), drain_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_s
        while self.sessions and loop.time() < deadline:  # noqa: ASYNC110 - bounded poll of a set
            await asyncio.sleep(0.1)
        for s in list(self.sessions):
            s.finish(CLOSE_GOING_AWAY, SERVER_SHUTDOWN)
        deadline = loop.time() + 15.0
        while self.sessions and loop.time() < deadline:  # noqa: ASYNC110 - bounded poll of a set
            await asyncio.sleep(0.05)
        log.warning("drained: %d stream(s) left open", len(self.sessions))


async def _refuse(ws: WebSocket, code: int, reason: str) -> None:
    await ws.send_json({"type": "error", "code": code, "message": reason})
    await ws.close(code, close_reason(reason))


def create_app(cfg: ServeConfig, engine_cfg: EngineConfig | None = None) -> FastAPI:
    """The service for ``cfg``; models load at application startup (lifespan), before it is ready."""
    svc = Service(cfg, engine_cfg)
    app = FastAPI(
        title="emotion engine", version=str(VERSION), lifespan=_lifespan(svc), docs_url=None, redoc_url=None
    )
    app.state.service = svc
    _probes(app, svc)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": PAGE_CSP})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.websocket(STREAM_PATH)
    async def stream(ws: WebSocket) -> None:
        await svc.stream(ws)

    return app


def _lifespan(svc: Service) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Worker threads for every stream's blocking stages, the shared models, the heap trimmer."""
    cfg = svc.cfg

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        # Every stream runs its blocking stages in worker threads: room for all of them.
        loop.set_default_executor(
            ThreadPoolExecutor(max_workers=4 * cfg.max_streams + 8, thread_name_prefix="stream")
        )
        svc.models = await asyncio.to_thread(
            SharedModels.load,
            svc.engine_cfg,
            cfg.fusion_max_batch,
            cfg.fusion_max_wait_ms,
            cfg.backend_timeout_s,
        )
        log.info("models loaded: %s", svc.models.describe())
        trimmer = asyncio.create_task(trim_every(cfg.malloc_trim_s), name="malloc-trim")
        yield
        trimmer.cancel()
        await asyncio.to_thread(svc.models.close)

    return lifespan


def _probes(app: FastAPI, svc: Service) -> None:
    """/healthz, /readyz and /metrics."""
    cfg = svc.cfg

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """200 while the process serves; 503 when the shared fusion backend is stuck (a call running
        past ``backend_timeout_s``): the streams get errors, so restart the process."""
        health = svc.models.health() if svc.models is not None else {"ok": True}
        if health["ok"]:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "stuck", "reason": health["reason"]}, status_code=503)

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        d = svc.check() if svc.models is not None else None
        body: dict[str, Any] = {
            "ready": bool(d and d.admitted),
            "active_streams": svc.admission.active,
            "max_streams": cfg.max_streams,
            "reason": "models loading" if d is None else d.reason,
        }
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if not svc.authorised(request.headers.get("authorization")):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        svc.metrics.pending.set(svc.pending)
        return Response(svc.metrics.render(), media_type=svc.metrics.content_type)
