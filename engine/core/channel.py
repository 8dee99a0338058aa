"""A bounded, ordered frame channel between a source and a stage.

Media frames are bounded: in ``lossless`` mode a full channel makes ``put`` wait (backpressure to the
source); otherwise ``policy`` decides what to give up, and every give-up is COUNTED: "latest" (video)
replaces the pending media frame with the new one; "drop_new" (audio) refuses the new frame. System
frames (status, end) are never dropped and keep their order relative to media frames.
"""

from __future__ import annotations

import asyncio
from collections import deque

from engine.frames import AudioFrame, Frame, VideoFrame


class FrameChannel:
    def __init__(self, maxsize: int, lossless: bool, policy: str = "latest") -> None:
        if policy not in ("latest", "drop_new"):
            raise ValueError(f"policy must be 'latest' or 'drop_new', got {policy!r}")
        self.maxsize = maxsize if lossless else (1 if policy == "latest" else maxsize)
        self.lossless = lossless
        self.policy = policy
        self._items: deque[Frame] = deque()
        self._media = 0
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.dropped_frames = 0
        self.dropped_samples = 0  # audio samples (16 kHz) dropped

    @staticmethod
    def _is_media(f: Frame) -> bool:
        return isinstance(f, AudioFrame | VideoFrame)

    def _count_drop(self, f: Frame) -> None:
        self.dropped_frames += 1
        if isinstance(f, AudioFrame):
            self.dropped_samples += len(f.pcm)

    async def put(self, frame: Frame) -> None:
        if self._is_media(frame):
            if self.lossless:
                while self._media >= self.maxsize:
                    self._writable.clear()
                    await self._writable.wait()
            elif self._media >= self.maxsize:
                if self.policy == "drop_new":
                    self._count_drop(frame)
                    return
                # latest: drop the oldest pending media frame, keep system frames in place
                for i, old in enumerate(self._items):
                    if self._is_media(old):
                        del self._items[i]
                        self._media -= 1
                        self._count_drop(old)
                        break
            self._media += 1
        self._items.append(frame)
        self._readable.set()

    async def get(self) -> Frame:
        while not self._items:
            self._readable.clear()
            await self._readable.wait()
        f = self._items.popleft()
        if self._is_media(f):
            self._media -= 1
            self._writable.set()
        return f

    def take_media(self, limit: int) -> list[Frame]:
        """Up to ``limit`` media frames queued right now, without waiting (stops at a system frame)."""
        out: list[Frame] = []
        while self._items and len(out) < limit and self._is_media(self._items[0]):
            out.append(self._items.popleft())
            self._media -= 1
        if out:
            self._writable.set()
        return out

    def qsize(self) -> int:
        return len(self._items)
