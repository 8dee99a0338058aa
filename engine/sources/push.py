"""Push source: the embedding application feeds PCM and frames with its own timestamps.

``push_audio``/``push_frame`` are thread-safe and never block the caller. Audio is converted to 16 kHz
mono on the way in (any rate, [n] or [n, channels]); when the bounded queue is full the audio is
dropped and counted in ``dropped_samples`` (reported in events). Video keeps only what fits; frames
that do not fit are counted in ``dropped_frames``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np

from engine.frames import AudioFrame, EndFrame, Frame, VideoFrame
from engine.sources.base import Emit, MediaClock, Source
from engine.sources.resample import StreamResampler
from models.encoders.audio import TARGET_SR


class PushSource(Source):
    realtime = True

    def __init__(
        self, audio: bool = True, video: bool = True, queue_size: int = 1024, name: str = "push"
    ) -> None:
        super().__init__(name)
        self.modalities = tuple(m for m, w in (("audio", audio), ("video", video)) if w)
        self.queue_size = queue_size
        self.dropped_samples = 0
        self.dropped_frames = 0
        self._q: asyncio.Queue[Frame] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[Frame] = []  # pushed before the engine started
        self._lock = threading.RLock()  # end() flushes the resampler and offers frames under it
        self._rs: StreamResampler | None = None
        self._t_next: float | None = None

    # -- producer side (any thread) ----------------------------------------------------------------
    def push_audio(self, pcm: np.ndarray, sr: int, t: float | None = None) -> None:
        """pcm: [n] or [n, channels] (float in [-1, 1] or integer PCM) at ``sr`` Hz; ``t``: media time of
        its first sample (s); None continues right after the previous chunk."""
        if "audio" not in self.modalities:
            raise RuntimeError("this push source was created without audio")
        arr = np.asarray(pcm)
        with self._lock:
            if self._rs is None or self._rs.sr_in != int(sr):
                self._flush_resampler()
                self._rs = StreamResampler(int(sr))
            if t is None:
                t = self._t_next if self._t_next is not None else 0.0
            held = self._rs.held_s  # the resampler's output lags its input by this much
            out = self._rs(arr, channels_axis=1 if arr.ndim == 2 else None)
            self._t_next = float(t) + arr.shape[0] / float(sr)
        if len(out):
            self._offer(AudioFrame(out, TARGET_SR, float(t) - held, self.name, arrival=time.monotonic()))

    def _flush_resampler(self) -> None:
        """Emit what the resampler still holds (end of stream, or a change of sample rate)."""
        if self._rs is None or self._t_next is None:
            return
        held = self._rs.held_s
        tail = self._rs(np.zeros(0, np.float32), last=True)
        if len(tail):
            self._offer(AudioFrame(tail, TARGET_SR, self._t_next - held, self.name, arrival=time.monotonic()))

    def push_frame(self, image: np.ndarray, t: float, bgr: bool = False) -> None:
        """image: [H, W, 3] uint8 (RGB, or BGR with ``bgr``); ``t``: media time (s)."""
        if "video" not in self.modalities:
            raise RuntimeError("this push source was created without video")
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"frame must be [H, W, 3], got {img.shape}")
        if bgr:
            img = img[..., ::-1]
        self._offer(
            VideoFrame(
                np.ascontiguousarray(img, dtype=np.uint8), float(t), self.name, arrival=time.monotonic()
            )
        )

    def end(self) -> None:
        """No more media: the engine closes the last window and finishes."""
        with self._lock:
            self._flush_resampler()
        self._offer(EndFrame(self.name, self._t_next or 0.0), force=True)

    def _offer(self, frame: Frame, force: bool = False) -> None:
        with self._lock:
            if self._loop is None:
                self._pending.append(frame)
                return
            loop = self._loop
        loop.call_soon_threadsafe(self._put, frame, force)

    def _put(self, frame: Frame, force: bool) -> None:
        # The asyncio queue itself is unbounded so that the EndFrame (a system frame) always fits; the
        # bound applies to media frames here.
        assert self._q is not None
        if not force and self._q.qsize() >= self.queue_size:
            if isinstance(frame, AudioFrame):
                self.dropped_samples += len(frame.pcm)
            else:
                self.dropped_frames += 1
            return
        self._q.put_nowait(frame)

    # -- engine side ---------------------------------------------------------------------------------
    async def run(self, emit: Emit, clock: MediaClock) -> None:
        self._q = asyncio.Queue()
        with self._lock:
            pending, self._pending = self._pending, []
            for f in pending:
                self._put(f, isinstance(f, EndFrame))
            self._loop = asyncio.get_running_loop()
        while True:
            frame = await self._q.get()
            await emit(frame)
            if isinstance(frame, EndFrame):
                return

    def stats(self) -> dict[str, Any]:
        return {"dropped_samples": self.dropped_samples, "dropped_frames": self.dropped_frames}
