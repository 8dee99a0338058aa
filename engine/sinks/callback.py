"""Python callbacks: a plain function or a coroutine function, called with each event."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from engine.frames import EmotionEvent
from engine.sinks.base import Sink


class CallbackSink(Sink):
    name = "callback"

    def __init__(self, fn: Callable[[EmotionEvent], None | Awaitable[None]]) -> None:
        self.fn = fn

    async def handle(self, event: EmotionEvent) -> None:
        out = self.fn(event)
        if inspect.isawaitable(out):
            await out
