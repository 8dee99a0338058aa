"""The per-modality consumers: they read a modality's channel and fill the media timeline.

- audio: the timeline's samples and the VAD's speech probabilities (silero, in a worker thread);
- video: frames subsampled to the face profile's rate, analysed in batches by the face stage.

Each pauses while it is far ahead of the next window in lossless replay (backpressure), and hands
source status and end-of-stream frames to the media state.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from engine.core.channel import FrameChannel
from engine.core.media import MediaState
from engine.frames import AudioFrame, EndFrame, SourceStatusFrame, VideoFrame
from engine.stages.face import FaceRecord, FaceStage

FACE_BATCH = 8  # most video frames analysed in one embedding pass


class Backpressure:
    """Lossless replay: a consumer waits while its media is more than ``max_lead_s`` past the next
    window end. Live sources never wait (their channels drop instead)."""

    def __init__(
        self, media: MediaState, next_end: Callable[[], float], max_lead_s: float, live: bool
    ) -> None:
        self.media, self.next_end, self.max_lead_s, self.live = media, next_end, max_lead_s, live
        self.closed = False

    async def wait(self, t: float) -> None:
        if self.live:
            return
        while t > self.next_end() + self.max_lead_s and not self.closed:
            await self.media.wait_progress(0.5)


class AudioConsumer:
    def __init__(
        self,
        channel: FrameChannel,
        media: MediaState,
        vad: Any | None,
        lead: Backpressure,
        vad_ms: list[float],
    ) -> None:
        self.ch, self.media, self.vad, self.lead = channel, media, vad, lead
        self.vad_ms = vad_ms  # VAD time per chunk since the last window took it (the window loop's feed)

    def _run_vad(self, pcm: np.ndarray, t: float) -> None:
        t0 = time.perf_counter()
        self.media.audio.vad.extend(self.vad.process(pcm, t))
        self.vad_ms.append((time.perf_counter() - t0) * 1e3)

    async def run(self) -> None:
        media = self.media
        while True:
            f = await self.ch.get()
            if isinstance(f, AudioFrame):
                await self.lead.wait(f.t)
                if self.vad is not None:
                    await asyncio.to_thread(self._run_vad, f.pcm, f.t)
                media.audio.append(f.t, f.pcm)  # after the VAD: a window never sees samples without VAD
                media.arrived("audio", media.audio.end, f.arrival)
            elif isinstance(f, SourceStatusFrame):
                media.status(f)
            elif isinstance(f, EndFrame):
                media.end("audio", f.arrival)
            media.progress.set()


class VideoConsumer:
    def __init__(
        self,
        channel: FrameChannel,
        media: MediaState,
        face: FaceStage,
        lead: Backpressure,
        on_error: Callable[[str], None],
    ) -> None:
        self.ch, self.media, self.face, self.lead, self.on_error = channel, media, face, lead, on_error
        self._slot = -1
        self._first_t: float | None = None

    def keep(self, t: float) -> bool:
        """Subsample to the face profile's frame rate (slot grid, robust to timestamp jitter)."""
        if self._first_t is None:
            self._first_t = t
        slot = int(math.floor((t - self._first_t) * self.media.face_fps + 0.5))
        if slot <= self._slot:
            return False
        self._slot = slot
        return True

    def _blank(self, f: VideoFrame, error: str) -> FaceRecord:
        z = np.zeros(self.face.dim, np.float32)
        return FaceRecord(f.t, f.arrival, z, False, None, 0.0, 1.0, 0.0, math.inf, None, 0.0, error)

    async def run(self) -> None:
        media = self.media
        while True:
            f = await self.ch.get()
            if isinstance(f, VideoFrame):
                # Frames that queued up meanwhile are analysed together (one embedding pass).
                batch = [f, *self.ch.take_media(FACE_BATCH - 1)]
                await self.lead.wait(batch[0].t)
                batch = [x for x in batch if self.keep(x.t)]
                if not batch:
                    continue
                try:
                    recs = await self.face.process_batch(batch)
                except Exception as e:  # noqa: BLE001 - bad frames are a missing face, not a crash
                    why = f"{type(e).__name__}: {e}"
                    self.on_error(f"face stage: {why}")
                    recs = [self._blank(x, why) for x in batch]
                for x, rec in zip(batch, recs, strict=True):
                    media.video.append(rec)
                    media.arrived("video", rec.t, x.arrival)
            elif isinstance(f, SourceStatusFrame):
                media.status(f)
            elif isinstance(f, EndFrame):
                media.end("video", f.arrival)
            media.progress.set()
