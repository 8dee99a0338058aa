"""The source interface. Sources are the only code that touches devices or files.

A source runs as one coroutine, ``run(emit, clock)``, and hands frames to ``emit`` (which may wait:
that is the engine's backpressure). It stamps monotonic media timestamps (seconds; live sources use
``clock.now()``, file replay the container's timestamps). A device that fails or disappears is reported
as a ``SourceStatusFrame(ok=False)`` and, where it makes sense, retried; it never raises out of ``run``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from engine.frames import Frame

Emit = Callable[[Frame], Awaitable[None]]


@dataclass
class MediaClock:
    """Shared media time base of live sources: t = time.monotonic() - epoch (s)."""

    epoch: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return time.monotonic() - self.epoch


class Source(ABC):
    #: modalities this source can deliver ("audio", "video")
    modalities: tuple[str, ...] = ()
    #: True when media arrives at wall-clock pace (camera, mic, paced replay): video keeps only the
    #: latest frame and a window waits a bounded time for a lagging modality. False (fast replay):
    #: every frame is processed and windows wait for all modalities.
    realtime: bool = True

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    async def run(self, emit: Emit, clock: MediaClock) -> None:
        """Produce frames until the media ends or the task is cancelled; end with an EndFrame."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device (called from the engine's event loop after run() returns)."""
