"""Webcam capture through OpenCV. Reads run in a worker thread; a camera that cannot be opened or stops
delivering frames becomes a video-missing status and is reopened every ``reopen_s`` seconds."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from engine.frames import EndFrame, SourceStatusFrame, VideoFrame
from engine.sources.base import Emit, MediaClock, Source


class CameraSource(Source):
    modalities = ("video",)
    realtime = True

    def __init__(
        self,
        index: int | str = 0,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        reopen_s: float = 2.0,
        max_failures: int = 5,
        max_seconds: float | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name or f"camera:{index}")
        self.index, self.width, self.height, self.fps = index, width, height, fps
        self.reopen_s, self.max_failures, self.max_seconds = reopen_s, max_failures, max_seconds
        self._cap: Any = None

    def _open(self) -> Any:
        import cv2

        cap = cv2.VideoCapture(self.index)
        if not cap.isOpened():
            cap.release()
            return None
        for prop, v in (
            (cv2.CAP_PROP_FRAME_WIDTH, self.width),
            (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
            (cv2.CAP_PROP_FPS, self.fps),
        ):
            if v:
                cap.set(prop, v)
        return cap

    def _read(self) -> Any:
        """Blocking read -> RGB uint8 [H, W, 3] or None on failure."""
        import cv2

        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    async def run(self, emit: Emit, clock: MediaClock) -> None:  # noqa: C901 - capture, reopen and pacing in one loop
        healthy: bool | None = None
        failures = 0
        while self.max_seconds is None or clock.now() < self.max_seconds:
            if self._cap is None:
                try:
                    self._cap = await asyncio.to_thread(self._open)
                except Exception as e:  # noqa: BLE001 - any backend error means "no camera"
                    self._cap = None
                    reason = f"camera {self.index} error: {e}"
                else:
                    reason = f"camera {self.index} could not be opened"
                if self._cap is None:
                    if healthy is not False:
                        await emit(SourceStatusFrame("video", False, reason, clock.now(), self.name))
                        healthy = False
                    await asyncio.sleep(self.reopen_s)
                    continue
            try:
                rgb = await asyncio.to_thread(self._read)
            except Exception as e:  # noqa: BLE001 - a driver error is a dropout, not a crash
                rgb, err = None, str(e)
            else:
                err = "read failed"
            t = clock.now()
            if rgb is None:
                failures += 1
                if failures >= self.max_failures:
                    self._release()  # device gone or wedged: reopen later
                    if healthy is not False:
                        await emit(
                            SourceStatusFrame(
                                "video", False, f"camera {self.index} lost ({err})", t, self.name
                            )
                        )
                        healthy = False
                    failures = 0
                    await asyncio.sleep(self.reopen_s)
                continue
            failures = 0
            if healthy is not True:
                await emit(SourceStatusFrame("video", True, "", t, self.name))
                healthy = True
            await emit(VideoFrame(rgb, t, self.name, arrival=time.monotonic()))
        await emit(EndFrame(self.name, clock.now()))

    def close(self) -> None:
        self._release()
