"""Each sink gets its own queue and task, so a slow or failing sink never holds the window loop (nor
the other sinks) back.

Every event reaches every sink, in order: the queues are not bounded. A sink that raises is reported
(``errors``) and keeps getting the next events. On close each sink gets up to ``drain_s`` seconds to
take what is queued; whatever is left then is reported as not delivered, never silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from engine.frames import EmotionEvent
from engine.sinks.base import Sink

_CLOSE = object()


class SinkRunner:
    def __init__(self, sinks: list[Sink], on_error: Callable[[str], None], drain_s: float = 30.0) -> None:
        self.sinks = sinks
        self.on_error = on_error
        self.drain_s = drain_s
        self._queues: list[asyncio.Queue[Any]] = []
        self._tasks: list[asyncio.Task] = []

    async def _call(self, sink: Sink, coro: Any) -> None:
        try:
            await coro
        except Exception as e:  # noqa: BLE001 - a broken sink must not stop the stream
            self.on_error(f"sink {sink.name}: {type(e).__name__}: {e}")

    async def start(self, info: dict) -> None:
        for sink in self.sinks:
            await self._call(sink, sink.start(info))
            q: asyncio.Queue[Any] = asyncio.Queue()
            self._queues.append(q)
            self._tasks.append(asyncio.create_task(self._run(sink, q), name=f"sink:{sink.name}"))

    async def _run(self, sink: Sink, q: asyncio.Queue[Any]) -> None:
        while (ev := await q.get()) is not _CLOSE:
            await self._call(sink, sink.handle(ev))

    def put(self, ev: EmotionEvent) -> None:
        for q in self._queues:
            q.put_nowait(ev)

    async def close(self) -> None:
        for q in self._queues:
            q.put_nowait(_CLOSE)
        for sink, q, task in zip(self.sinks, self._queues, self._tasks, strict=True):
            done, _ = await asyncio.wait({task}, timeout=self.drain_s)
            if not done:
                left = q.qsize() - 1  # the close marker
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                self.on_error(
                    f"sink {sink.name}: {max(left, 0) + 1} event(s) not delivered: "
                    f"still busy after {self.drain_s:g} s"
                )
        for sink in self.sinks:
            await self._call(sink, sink.close())
