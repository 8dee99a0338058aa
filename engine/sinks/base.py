"""Sinks receive every EmotionEvent in order. A failing sink is reported and the stream goes on, unless
the sink is ``fatal``: one whose failure loses events the user relies on (a JSONL record) stops the
stream instead (``SinkRunner(on_fatal=...)``)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from engine.frames import EmotionEvent


class Sink(ABC):
    name = "sink"
    #: True: a failure of this sink ends the stream (the runner calls ``on_fatal`` once and the sink
    #: gets no more events). False: it is reported and the sink keeps getting events.
    fatal: bool = False

    def check(self) -> None:  # noqa: B027 - optional hook
        """Cheap checks before anything loads (a file that must not be overwritten, ...); raises with
        one line that says what is wrong."""

    async def start(self, info: dict) -> None:  # noqa: B027 - optional hook
        """Called once before the first event with the engine's description (model, backend, ...)."""

    @abstractmethod
    async def handle(self, event: EmotionEvent) -> None: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release."""
