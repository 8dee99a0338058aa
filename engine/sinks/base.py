"""Sinks receive every EmotionEvent in order. A failing sink is reported, never fatal to the stream."""

from __future__ import annotations

from abc import ABC, abstractmethod

from engine.frames import EmotionEvent


class Sink(ABC):
    name = "sink"

    async def start(self, info: dict) -> None:  # noqa: B027 - optional hook
        """Called once before the first event with the engine's description (model, backend, ...)."""

    @abstractmethod
    async def handle(self, event: EmotionEvent) -> None: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release."""
