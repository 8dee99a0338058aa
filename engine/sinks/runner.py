"""Each sink gets its own queue and task, so a slow or failing sink never holds the window loop (nor
the other sinks) back.

Every event reaches every sink, in order: the queues are not bounded. A sink that raises is reported
(``on_error``) and keeps getting the next events. A ``fatal`` sink that raises (a JSONL file on a full
disk) is reported once through ``on_fatal`` (the engine passes its ``fail``: the stream stops) and gets
no more events; without ``on_fatal`` it goes to ``on_error``. On close each sink gets up to ``drain_s``
seconds to take what is queued; whatever is left then, and whatever a failed fatal sink did not take, is
reported as not delivered, never silently dropped.
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
    def __init__(
        self,
        sinks: list[Sink],
        on_error: Callable[[str], None],
        drain_s: float = 30.0,
        *,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.sinks = sinks
        self.on_error = on_error
        self.on_fatal = on_fatal
        self.drain_s = drain_s
        self.failed: dict[int, str] = {}  # index of a fatal sink that failed -> its one-line reason
        self._skipped: dict[int, int] = {}  # events a failed fatal sink did not get
        self._queues: list[asyncio.Queue[Any]] = []
        self._tasks: list[asyncio.Task] = []

    async def _call(self, i: int, coro: Any) -> None:
        sink = self.sinks[i]
        try:
            await coro
        except Exception as e:  # noqa: BLE001 - a broken sink is reported; only a fatal one stops the stream
            msg = f"sink {sink.name}: {type(e).__name__}: {e}"
            if sink.fatal and i not in self.failed:
                self.failed[i] = msg
                (self.on_fatal or self.on_error)(msg)
            else:
                self.on_error(msg)

    async def start(self, info: dict) -> None:
        for i, sink in enumerate(self.sinks):
            await self._call(i, sink.start(info))
            q: asyncio.Queue[Any] = asyncio.Queue()
            self._queues.append(q)
            self._tasks.append(asyncio.create_task(self._run(i, q), name=f"sink:{sink.name}"))

    async def _run(self, i: int, q: asyncio.Queue[Any]) -> None:
        sink = self.sinks[i]
        while (ev := await q.get()) is not _CLOSE:
            if i in self.failed:
                self._skipped[i] = self._skipped.get(i, 0) + 1
                continue
            await self._call(i, sink.handle(ev))

    def put(self, ev: EmotionEvent) -> None:
        for q in self._queues:
            q.put_nowait(ev)

    async def close(self) -> None:
        for q in self._queues:
            q.put_nowait(_CLOSE)
        for i, (sink, q, task) in enumerate(zip(self.sinks, self._queues, self._tasks, strict=True)):
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
            if self._skipped.get(i):
                self.on_error(f"sink {sink.name}: {self._skipped[i]} event(s) not delivered after it failed")
        for i, sink in enumerate(self.sinks):
            await self._call(i, sink.close())
