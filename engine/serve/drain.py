"""uvicorn's server with a drain: a deploy stops a server without dropping a call.

On the first SIGTERM (or SIGINT) the server stops admitting (``/readyz``: 503 "server draining"), lets
the live streams run for up to ``drain_s``, then ends each one with its last window, final event and
summary and a close with 1001 "server shutting down", and exits 0. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from types import FrameType

import uvicorn

from engine.serve.app import Service

log = logging.getLogger("engine.serve")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service, drain_s: float) -> None:
        super().__init__(config)
        self.service = service
        self.drain_s = drain_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signalled = False
        self._drain: asyncio.Task | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self.started and self.servers and self.servers[0].sockets:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            tls = bool(self.config.ssl_certfile)
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            page, ws = (
                f"{'https' if tls else 'http'}://{where}/",
                f"{'wss' if tls else 'ws'}://{where}/v1/stream",
            )
            print(f"engine.serve: ready: live page at {page} , streams at {ws}", flush=True)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not uvicorn's: it closes every WebSocket with 1012 at once and re-raises the signal at exit.
        if self._signalled or self._loop is None:
            self.should_exit = True
            self.force_exit = self._signalled
            return
        self._signalled = True
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain = asyncio.ensure_future(self._run_drain())

    async def _run_drain(self) -> None:
        try:
            await self.service.drain(self.drain_s)
        except Exception:  # noqa: BLE001 - a failed drain must still let the server exit
            log.exception("drain failed")
        finally:
            self.should_exit = True
