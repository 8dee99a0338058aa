"""Microphone capture through sounddevice (PortAudio), imported lazily.

PortAudio calls back on its own thread with [frames, channels] float32 blocks; they cross to the event
loop through a bounded queue. When that queue is full the block is dropped and COUNTED (``dropped``,
reported in every event), never silently. An unavailable or vanished device becomes an audio-missing
status and is reopened every ``reopen_s`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from engine.core.aio import within
from engine.frames import AudioFrame, EndFrame, SourceStatusFrame
from engine.sources.base import Emit, MediaClock, Source
from engine.sources.resample import StreamResampler
from models.encoders.audio import TARGET_SR


class MicrophoneSource(Source):
    modalities = ("audio",)
    realtime = True

    def __init__(
        self,
        device: int | str | None = None,
        samplerate: int | None = None,
        channels: int | None = None,
        block_s: float = 0.032,
        queue_blocks: int = 256,
        reopen_s: float = 2.0,
        stall_s: float = 1.0,
        max_seconds: float | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name or f"mic:{device if device is not None else 'default'}")
        self.device, self.samplerate, self.channels = device, samplerate, channels
        self.block_s, self.queue_blocks, self.reopen_s, self.stall_s = (
            block_s,
            queue_blocks,
            reopen_s,
            stall_s,
        )
        self.max_seconds = max_seconds
        self.dropped_samples = 0  # at 16 kHz
        self._stream: Any = None

    def _open(self, loop: asyncio.AbstractEventLoop, q: asyncio.Queue, clock: MediaClock) -> tuple[Any, int]:
        import sounddevice as sd  # lazy: importing needs PortAudio

        info = sd.query_devices(self.device, "input")
        sr = int(self.samplerate or info["default_samplerate"] or TARGET_SR)
        ch = int(self.channels or min(2, max(1, int(info["max_input_channels"]))))

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            # PortAudio thread: copy (the buffer is reused) and hand over without blocking.
            block = (
                np.array(indata, dtype=np.float32, copy=True),
                clock.now() - frames / sr,
                time.monotonic(),
            )
            loop.call_soon_threadsafe(self._offer, q, block, sr)

        stream = sd.InputStream(
            device=self.device,
            samplerate=sr,
            channels=ch,
            dtype="float32",
            blocksize=max(1, int(round(self.block_s * sr))),
            callback=callback,
        )
        stream.start()
        return stream, sr

    def _offer(self, q: asyncio.Queue, block: tuple, sr: int) -> None:
        try:
            q.put_nowait(block)
        except asyncio.QueueFull:
            self.dropped_samples += int(round(len(block[0]) * TARGET_SR / sr))

    async def run(self, emit: Emit, clock: MediaClock) -> None:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue(maxsize=self.queue_blocks)
        healthy: bool | None = None
        while self.max_seconds is None or clock.now() < self.max_seconds:
            if self._stream is None:
                try:
                    self._stream, sr = await asyncio.to_thread(self._open, loop, q, clock)
                except Exception as e:  # noqa: BLE001 - OSError (no PortAudio), PortAudioError, ValueError
                    self._stream = None
                    if healthy is not False:
                        await emit(
                            SourceStatusFrame(
                                "audio", False, f"microphone unavailable: {e}", clock.now(), self.name
                            )
                        )
                        healthy = False
                    await asyncio.sleep(self.reopen_s)
                    continue
                resampler = StreamResampler(sr)
                t_next: float | None = None
            got, item = await within(q.get(), self.stall_s)
            if not got:
                # No callback for stall_s: the device vanished or the stream stalled.
                active = bool(getattr(self._stream, "active", False))
                await asyncio.to_thread(self._close_stream)
                if healthy is not False:
                    why = "stream stalled" if active else "stream stopped"
                    await emit(SourceStatusFrame("audio", False, f"microphone {why}", clock.now(), self.name))
                    healthy = False
                await asyncio.sleep(self.reopen_s)
                continue
            pcm, t_cap, arrival = item
            if healthy is not True:
                await emit(SourceStatusFrame("audio", True, "", clock.now(), self.name))
                healthy = True
            out = resampler(pcm, channels_axis=1)  # [frames, channels]
            # Contiguous sample clock while blocks flow; re-anchor on a gap (after a drop or a reopen).
            if t_next is None or abs(t_cap - t_next) > 0.25:
                t_next = max(0.0, t_cap)
            if len(out):
                await emit(AudioFrame(out, TARGET_SR, t_next, self.name, arrival=arrival))
                t_next += len(out) / TARGET_SR
        await asyncio.to_thread(self._close_stream)
        await emit(EndFrame(self.name, clock.now()))

    def _close_stream(self) -> None:
        if self._stream is not None:
            try:
                self._stream.stop()
                self._stream.close()
            finally:
                self._stream = None

    def close(self) -> None:
        self._close_stream()
