"""The window loop: waits until a window's media is in, processes it, and hands the event on.

A window is processed once every live modality has media past its end (fast replay: always waits;
live: at most ``queues.live_wait_s`` late), in order, one at a time. Processing runs in a worker
thread (``WindowProcessor``: health, speech features, the window's recognition pass, text features,
fusion). Live, a window that starts more than ``asr.max_lag_s`` after its media arrived gets no
recognition pass, so the stream keeps up instead of falling further behind; the final window always
gets one (it commits the stream's last words).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from engine.config import EngineConfig
from engine.core.media import TRACKS, MediaState
from engine.core.timeline import WindowSchedule, WindowSpec
from engine.frames import EmotionEvent
from engine.sources.base import MediaClock
from engine.stages.window_processor import WindowInputs, WindowProcessor


class StreamFeed:
    """What a stream's other tasks hand its windows, in one place: the media clock, the engine-level
    errors (every one, and those not yet copied into an event), the VAD time since the last window, and
    what the channels and sources dropped."""

    def __init__(self, sources: Sequence[Any] = ()) -> None:
        self.clock = MediaClock()
        self.errors: list[str] = []  # every engine-level error (sources, sinks, a fault)
        self.pending_errors: list[str] = []  # not yet copied into an event
        self.vad_ms: list[float] = []  # VAD time per chunk since the last window took it
        self.sources = list(sources)
        self.channels: dict[str, Any] = {}  # modality -> FrameChannel, once the stream starts

    def take_errors(self) -> list[str]:
        errors, self.pending_errors[:] = list(self.pending_errors), []
        return errors

    def take_vad_ms(self) -> float:
        total = sum(self.vad_ms)
        self.vad_ms.clear()
        return total

    def dropped(self) -> dict[str, int]:
        ch = self.channels
        return {
            "audio_samples": ch["audio"].dropped_samples
            + sum(getattr(s, "dropped_samples", 0) for s in self.sources),
            "video_frames": ch["video"].dropped_frames
            + sum(getattr(s, "dropped_frames", 0) for s in self.sources),
        }


class WindowLoop:
    def __init__(
        self,
        cfg: EngineConfig,
        media: MediaState,
        processor: WindowProcessor,
        deliver: Callable[[EmotionEvent], Awaitable[None]],
        feed: StreamFeed,
        *,
        realtime: bool,
    ) -> None:
        self.cfg, self.media, self.processor, self.deliver, self.feed = cfg, media, processor, deliver, feed
        self.realtime = realtime
        self.schedule = WindowSchedule(cfg.window)
        self.seq = 0

    async def wait_ready(self, t_end: float) -> bool:
        """True when the window ending at ``t_end`` can be processed; False when the streams ended
        before it."""
        media = self.media
        while True:
            if media.all_ended():
                return media.media_end() >= t_end - 1e-6
            if media.ready(t_end):
                return True
            if self.realtime and self.feed.clock.now() >= t_end + self.cfg.queues.live_wait_s:
                return True  # live: a lagging modality does not hold the stream back
            await media.wait_progress(0.05 if self.realtime else 1.0)

    async def run(self) -> None:
        while True:
            t_end = self.schedule.next_end()
            if await self.wait_ready(t_end):
                spec = self.schedule.take()
                if self.media.all_ended():
                    spec.final = self.schedule.is_last(self.media.media_end())
                await self.process(spec)
                if spec.final:
                    return
                continue
            # The closing window, also when (live) the stream ended right on the last window's end: the
            # last event of a stream is always marked final, and its pass commits the tentative words.
            spec = self.schedule.final(self.media.media_end(), force=self.seq > 0)
            if spec is not None:
                await self.process(spec)
            elif self.seq == 0 and (self.feed.errors or any(self.media.down.values())):
                # Nothing playable at all (corrupt file, no device): one event says why.
                await self.process(WindowSpec(0, 0.0, self.media.media_end(), final=True))
            return

    def inputs(self, spec: WindowSpec, t_ready: float) -> WindowInputs:
        media = self.media
        pcm, coverage = media.audio.slice(spec.t_start, spec.t_end)
        speech = media.audio.speech(spec.t_start, spec.t_end)
        records = media.video.slice(spec.t_start, spec.t_end)
        reasons = {m: media.down_reason(m, spec.t_start, spec.t_end) for m in TRACKS}
        lag = time.monotonic() - t_ready if self.realtime else 0.0
        # The final window always gets its pass: it commits the stream's tentative words, and no later
        # window waits behind it (skipped, the stream's last words would be lost).
        lagging = lag > self.cfg.asr.max_lag_s and not spec.final
        skip_asr = f"ASR lagging: window started {lag:.1f} s after its media" if lagging else ""
        pcm_t = media.audio.first_sample(spec.t_start, spec.t_end)
        span = self.cfg.asr.span(self.cfg.window.window_s)
        asr_audio = None
        if span > self.cfg.window.window_s:  # the pass hears more than the window
            a0 = max(0.0, spec.t_end - span)
            asr_pcm, _ = media.audio.slice(a0, spec.t_end)
            asr_audio = (
                asr_pcm,
                media.audio.first_sample(a0, spec.t_end),
                media.audio.speech(a0, spec.t_end),
            )
        return WindowInputs(spec, pcm, coverage, speech, records, reasons, skip_asr, pcm_t, asr_audio)

    def ready_time(self, t_end: float) -> float:
        """When the window ending at ``t_end`` could first be processed (monotonic): the arrival of the
        media that completed it or, live, when a modality is late or missing, the deadline that
        released it. (Not the last arrival of the missing modality: a dropout would then count as
        latency, and a stream that stops sending would read as a loaded server.)"""
        t_ready = self.media.arrival_of(t_end)
        if self.realtime and not self.media.all_ended() and not self.media.ready(t_end):
            deadline = self.feed.clock.epoch + t_end + self.cfg.queues.live_wait_s
            t_ready = max(t_ready, min(deadline, time.monotonic()))
        return t_ready

    async def process(self, spec: WindowSpec) -> None:
        t_ready = self.ready_time(spec.t_end)
        inputs = self.inputs(spec, t_ready)
        vad_total = self.feed.take_vad_ms()
        errors = self.feed.take_errors()
        try:
            ev = await asyncio.to_thread(self.processor, inputs)
        except Exception as e:  # noqa: BLE001 - keep the sequence gapless: emit a degraded event
            ev = self.processor.failed(spec, f"window processing failed: {type(e).__name__}: {e}")
        ev.errors = errors + ev.errors
        ev.latency_ms["vad"] = vad_total
        await self._emit(ev, t_ready)
        # Bounded memory: drop media that no later window can use.
        # The final window may start one hop earlier than the next regular one.
        keep_from = (
            self.schedule.next_end() - self.cfg.window.hop_s - self.cfg.asr.span(self.cfg.window.window_s)
        )
        self.media.trim(keep_from, spec.t_end)
        self.processor.trim(keep_from)
        self.media.progress.set()

    async def _emit(self, ev: EmotionEvent, t_ready: float) -> None:
        ev.dropped = self.feed.dropped()
        ev.seq = self.seq
        self.seq += 1
        ev.wall_time = time.time()
        ev.e2e_latency_ms = (time.monotonic() - t_ready) * 1e3
        await self.deliver(ev)
