"""The FastAPI application: ``/v1/stream`` (WebSocket, one per stream), ``/healthz``, ``/readyz`` and
``/metrics``. ``create_app`` is used as is by ``python -m engine.serve`` (uvicorn) and by the Ray Serve
deployment (``engine/serve/ray_app.py``)."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response

from engine.config import EngineConfig
from engine.memory import trim_every
from engine.serve.admission import Admission, LoadMonitor
from engine.serve.config import ServeConfig
from engine.serve.metrics import ServeMetrics
from engine.serve.protocol import CLOSE_POLICY, CLOSE_TRY_LATER, VERSION, close_reason
from engine.serve.session import StreamSession
from engine.shared import SharedModels

log = logging.getLogger("engine.serve")
STREAM_PATH = "/v1/stream"


class Service:
    """What the routes share: settings, the loaded models, admission, metrics."""

    def __init__(self, cfg: ServeConfig, engine_cfg: EngineConfig | None = None) -> None:
        self.cfg = cfg
        self.engine_cfg = engine_cfg or cfg.build_engine_config()
        self.models: SharedModels | None = None  # loaded at application startup
        self.metrics = ServeMetrics()
        self.metrics.capacity.set(cfg.max_streams)
        self.monitor = LoadMonitor(cfg.load_window_s)
        self.admission = Admission(cfg.max_streams, cfg.e2e_budget_ms, cfg.max_cpu, self.monitor)

    def authorised(self, header: str | None) -> bool:
        if self.cfg.token is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        ok = hmac.compare_digest(value.strip().encode(), self.cfg.token.encode())  # constant time
        return ok and scheme.lower() == "bearer"

    async def stream(self, ws: WebSocket) -> None:
        await ws.accept()
        if not self.authorised(ws.headers.get("authorization")):
            self.metrics.rejections.labels("auth").inc()
            await _refuse(
                ws, CLOSE_POLICY, "unauthorized: send the server's token as 'Authorization: Bearer <token>'"
            )
            return
        decision = self.admission.try_admit()
        if not decision.admitted:
            self.metrics.rejections.labels(decision.kind).inc()
            await _refuse(ws, CLOSE_TRY_LATER, decision.reason)
            return
        self.metrics.active.inc()
        self.metrics.streams.inc()
        session = StreamSession(ws, self)
        try:
            close = await session.run()
        finally:
            self.admission.release()  # before the close: a client that saw it may reconnect at once
            self.metrics.active.dec()
        if close is not None:
            await session.close(*close)


async def _refuse(ws: WebSocket, code: int, reason: str) -> None:
    await ws.send_json({"type": "error", "code": code, "message": reason})
    await ws.close(code, close_reason(reason))


def create_app(cfg: ServeConfig, engine_cfg: EngineConfig | None = None) -> FastAPI:
    """The service for ``cfg``; models load at application startup (lifespan), before it is ready."""
    svc = Service(cfg, engine_cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        # Every stream runs its blocking stages in worker threads: room for all of them.
        loop.set_default_executor(
            ThreadPoolExecutor(max_workers=4 * cfg.max_streams + 8, thread_name_prefix="stream")
        )
        svc.models = await asyncio.to_thread(
            SharedModels.load, svc.engine_cfg, cfg.fusion_max_batch, cfg.fusion_max_wait_ms
        )
        log.info("models loaded: %s", svc.models.describe())
        trimmer = asyncio.create_task(trim_every(cfg.malloc_trim_s), name="malloc-trim")
        yield
        trimmer.cancel()
        await asyncio.to_thread(svc.models.close)

    app = FastAPI(
        title="emotion engine", version=str(VERSION), lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.service = svc

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        d = svc.admission.check() if svc.models is not None else None
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
        return Response(svc.metrics.render(), media_type=svc.metrics.content_type)

    @app.websocket(STREAM_PATH)
    async def stream(ws: WebSocket) -> None:
        await svc.stream(ws)

    return app
