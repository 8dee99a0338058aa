"""The engine: sources -> stages -> windowed fusion -> events -> sinks, and the embedding API.

    async with Engine(config, sources=[FileReplaySource("clip.flv", fast=True)]) as eng:
        async for event in eng.events():
            ...

    eng = Engine(config)                  # no sources given: a push source (audio + video)
    async with eng:
        eng.push_audio(pcm, sr, t)        # from any thread
        eng.push_frame(rgb, t)
        eng.end_of_stream()

Tasks (all held by the engine, all cancelled on close): one per source, one consumer per modality
(audio: VAD + hand-over to ASR; video: face stage), the ASR stage, and the window loop. Blocking
work (decoding, models) runs in worker threads. A window is processed once every live modality has
media past its end (fast replay: always; live: at most ``queues.live_wait_s`` late).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.channel import FrameChannel
from engine.config import EngineConfig, resolve_path
from engine.frames import (
    AudioFrame,
    EmotionEvent,
    EndFrame,
    Frame,
    SourceStatusFrame,
    VideoFrame,
)
from engine.sinks.base import Sink
from engine.sources.base import MediaClock, Source
from engine.sources.file_replay import FileReplaySource
from engine.sources.push import PushSource
from engine.stages.asr import ASRStage
from engine.stages.face import FaceRecord, FaceStage
from engine.stages.fusion import FusionModel, FusionStage, build_backend, load_fusion_model
from engine.stages.vad import SileroVAD
from engine.stages.window import AudioTimeline, VideoTimeline, WindowSchedule, WindowSpec, WordTimeline
from engine.stages.window_processor import WindowInputs, WindowProcessor

_STOP = object()
UNTRAINED_BANNER = (
    "UNTRAINED MODEL: checkpoint none was asked for, so the fused emotion probabilities come from a "
    "randomly initialised CM-ARR and mean nothing. Modality health, transcripts, face tracking and the "
    "face expert reading are real. Drop --checkpoint none to use the shipped model."
)


def load_extractors(cfg: EngineConfig) -> Any:
    """The extractor bundle of ``cfg.extractors`` (a profile name or YAML path), models loaded now."""
    from models.encoders.profile import build_extractors, load_profile

    name = cfg.extractors
    prof = load_profile(
        name if "/" not in name and not name.endswith((".yaml", ".yml")) else resolve_path(name)
    )
    ex = build_extractors(prof)
    _ = ex.asr, ex.text, ex.speech, ex.face  # load every model before the first window
    return ex


class Engine:
    FACE_BATCH = 8  # most video frames analysed in one embedding pass

    def __init__(
        self,
        config: EngineConfig | None = None,
        sources: Sequence[Source] | None = None,
        sinks: Sequence[Sink] = (),
        *,
        extractors: Any | None = None,
        fusion: FusionModel | None = None,
        backend: Any | None = None,
        keep_events: bool = True,
        announce_untrained: bool = True,
        video: str | Path | None = None,
        audio: str | Path | None = None,
        fast: bool = False,
    ) -> None:
        """``sources``: what to read. Shortcuts: ``video``/``audio`` paths replay files (``fast``: as fast as
        possible); with neither and no sources, the engine takes pushed media (``push_audio``/``push_frame``).
        ``extractors``/``fusion``/``backend``: already loaded models to share between engines."""
        self.cfg = config or EngineConfig()
        if sources is None and (video or audio):
            sources = []
            if video:
                sources.append(FileReplaySource(video, fast=fast, audio=not audio))
            if audio:
                name = f"{Path(audio).name}:audio"
                sources.append(FileReplaySource(audio, fast=fast, video=False, name=name))
        self.sources: list[Source] = list(sources) if sources is not None else [PushSource()]
        self.sinks = list(sinks)
        self.extractors = extractors
        self.fusion_model = fusion
        self.backend = backend
        self.keep_events = keep_events
        self.announce_untrained = announce_untrained
        self._owns_extractors = False
        self.realtime = any(s.realtime for s in self.sources)
        self.clock = MediaClock()
        self._tasks: list[asyncio.Task] = []
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._seq = 0
        self._started = False
        self._closed = False
        self.finished = asyncio.Event()
        self.errors: list[str] = []  # engine-level errors (sources, sinks), also copied into events
        self._pending_errors: list[str] = []
        # modality bookkeeping
        self._providers = {m: sum(m in s.modalities for s in self.sources) for m in ("audio", "video")}
        self._ended = {m: 0 for m in ("audio", "video")}
        self._down: dict[str, list[tuple[float, bool, str]]] = {"audio": [], "video": []}  # (t, ok, reason)
        self._arrivals: dict[str, deque[tuple[float, float]]] = {"audio": deque(), "video": deque()}
        self._end_arrival = 0.0
        self._progress = asyncio.Event()
        self._audio = AudioTimeline()
        self._video = VideoTimeline()
        self._schedule = WindowSchedule(self.cfg.window)
        self._vad_ms: list[float] = []
        self._face_fps_slot = -1
        self._face_first_t: float | None = None

    # ----------------------------------------------------------------------------------------------
    # lifecycle
    # ----------------------------------------------------------------------------------------------
    def _load(self) -> None:
        """Blocking: models and backend (worker thread)."""
        if self.extractors is None:
            self.extractors = load_extractors(self.cfg)
            self._owns_extractors = True
        try:
            if self.fusion_model is None:
                ex = self.extractors
                self.fusion_model = load_fusion_model(self.cfg, ex.describe(), ex.dims)
            if self.backend is None:
                self.backend = build_backend(self.fusion_model, self.cfg)
            self.vad = SileroVAD() if self.cfg.vad else None
        except BaseException:
            if self._owns_extractors:  # a bad checkpoint must not leave native models for exit to trip on
                self.extractors.close()
                self.extractors, self._owns_extractors = None, False
            raise

    def describe(self) -> dict[str, Any]:
        fm = self.fusion_model
        return {
            "model": fm.identity if fm else "?",
            "trained": bool(fm and fm.trained),
            "backend": getattr(self.backend, "name", "?"),
            "stream": self.cfg.stream,
            "extractors": getattr(self.extractors, "profile", None) and self.extractors.profile.name,
            "sources": [s.name for s in self.sources],
            "realtime": self.realtime,
        }

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        await asyncio.to_thread(self._load)
        assert self.fusion_model is not None and self.backend is not None and self.extractors is not None
        if not self.fusion_model.trained and self.announce_untrained:
            logging.getLogger("engine").warning(UNTRAINED_BANNER)
        self.fusion = FusionStage(self.fusion_model, self.backend)
        dims = self.extractors.dims
        self.face_stage = FaceStage(self.extractors.face, dims["video"])
        self.face_stage.reset()  # extractors may be shared between engines: forget any tracked face
        profile = getattr(self.extractors, "profile", None)
        self.face_fps = float(profile.face.fps) if profile is not None else 30.0
        self.asr = ASRStage(self.extractors.asr if self.cfg.asr.enabled else None, self.cfg.asr)
        if self._providers["audio"] == 0:
            self.asr.end()  # no source will ever send audio: recognition is finished before it starts
        self.windows = WindowProcessor(
            self.cfg,
            self.extractors,
            self.fusion,
            self.fusion_model,
            vad_enabled=self.vad is not None,
            asr_enabled=self.asr.enabled,
        )
        self._channels = {
            "audio": FrameChannel(
                self.cfg.queues.audio_frames, lossless=not self.realtime, policy="drop_new"
            ),
            "video": FrameChannel(self.cfg.queues.video_frames, lossless=not self.realtime, policy="latest"),
        }
        info = self.describe()
        for sink in self.sinks:
            await self._sink_call(sink, sink.start(info))
        self.clock = MediaClock()
        spawn = self._tasks.append
        for src in self.sources:
            spawn(asyncio.create_task(self._run_source(src), name=f"source:{src.name}"))
        spawn(asyncio.create_task(self._audio_consumer(), name="audio"))
        spawn(asyncio.create_task(self._video_consumer(), name="video"))
        spawn(asyncio.create_task(self.asr.run(), name="asr"))
        self._window_task = asyncio.create_task(self._window_loop(), name="windows")
        spawn(self._window_task)

    async def wait(self) -> None:
        """Until the streams end and the last event is out."""
        await self.finished.wait()

    async def run(self) -> int:
        """Start, run to the end of the media, close. Returns the number of events."""
        await self.start()
        try:
            await self.wait()
        finally:
            await self.close()
        return self._seq

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for src in self.sources:
            try:
                src.close()
            except Exception as e:  # noqa: BLE001 - closing a broken device must not mask the run
                self.errors.append(f"closing {src.name}: {e}")
        for sink in self.sinks:
            await self._sink_call(sink, sink.close())
        if self._owns_extractors and self.extractors is not None:
            self.extractors.close()  # native face detector: close before interpreter shutdown
        self.finished.set()
        self._events.put_nowait(_STOP)

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def events(self) -> AsyncIterator[EmotionEvent]:
        """Every event in order until the streams end (needs ``keep_events``)."""
        if not self.keep_events:
            raise RuntimeError("this engine was created with keep_events=False; use a sink instead")
        while True:
            ev = await self._events.get()
            if ev is _STOP:
                self._events.put_nowait(_STOP)  # later iterators end too
                return
            yield ev

    # -- push API -----------------------------------------------------------------------------------
    def _push_source(self) -> PushSource:
        for s in self.sources:
            if isinstance(s, PushSource):
                return s
        raise RuntimeError("this engine has no push source; create it with sources=None or a PushSource")

    def push_audio(self, pcm: np.ndarray, sr: int, t: float | None = None) -> None:
        """Feed audio ([n] or [n, channels], any rate) starting at media time ``t`` (s). Thread-safe."""
        self._push_source().push_audio(pcm, sr, t)

    def push_frame(self, image: np.ndarray, t: float, bgr: bool = False) -> None:
        """Feed one RGB (or BGR) uint8 [H, W, 3] frame at media time ``t`` (s). Thread-safe."""
        self._push_source().push_frame(image, t, bgr)

    def end_of_stream(self) -> None:
        self._push_source().end()

    # ----------------------------------------------------------------------------------------------
    # sources and consumers
    # ----------------------------------------------------------------------------------------------
    async def _emit(self, frame: Frame) -> None:
        if isinstance(frame, AudioFrame):
            await self._channels["audio"].put(frame)
        elif isinstance(frame, VideoFrame):
            await self._channels["video"].put(frame)
        elif isinstance(frame, SourceStatusFrame):
            if frame.modality in self._channels:
                await self._channels[frame.modality].put(frame)
        elif isinstance(frame, EndFrame):
            src = next((s for s in self.sources if s.name == frame.source), None)
            for m in src.modalities if src else ("audio", "video"):
                await self._channels[m].put(EndFrame(frame.source, frame.t, frame.arrival))

    async def _run_source(self, src: Source) -> None:
        ended = False
        last_t = 0.0  # media time reached by this source: where a failure is placed

        async def emit(frame: Frame) -> None:
            nonlocal ended, last_t
            ended = ended or isinstance(frame, EndFrame)
            last_t = max(last_t, frame.t + (frame.duration if isinstance(frame, AudioFrame) else 0.0))
            await self._emit(frame)

        try:
            await src.run(emit, self.clock)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a failing source is a missing modality, not a crash
            msg = f"source {src.name} failed: {type(e).__name__}: {e}"
            self.errors.append(msg)
            self._pending_errors.append(msg)
            for m in src.modalities:
                await self._emit(SourceStatusFrame(m, False, msg, last_t, src.name))
        if not ended:
            await self._emit(EndFrame(src.name, last_t))

    def _status(self, f: SourceStatusFrame) -> None:
        self._down[f.modality].append((f.t, f.ok, f.reason))
        self._progress.set()

    def _is_down(self, m: str) -> bool:
        return bool(self._down[m]) and not self._down[m][-1][1]

    def _live(self, m: str) -> bool:
        """The modality has a running provider that is not reported down."""
        return self._ended[m] < self._providers[m] and not self._is_down(m)

    def _all_ended(self) -> bool:
        return all(self._ended[m] >= self._providers[m] for m in self._ended)

    async def _lead_wait(self, t: float) -> None:
        """Backpressure: a consumer pauses while it is far ahead of the next window (lossless mode)."""
        if self.realtime:
            return
        while t > self._schedule.next_end() + self.cfg.queues.max_lead_s and not self._closed:
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), timeout=0.5)

    def _run_vad(self, pcm: np.ndarray, t: float) -> None:
        t0 = time.perf_counter()
        self._audio.vad.extend(self.vad.process(pcm, t))
        self._vad_ms.append((time.perf_counter() - t0) * 1e3)

    async def _audio_consumer(self) -> None:
        ch = self._channels["audio"]
        while True:
            f = await ch.get()
            if isinstance(f, AudioFrame):
                await self._lead_wait(f.t)
                self._audio.append(f.t, f.pcm)
                if self.vad is not None:
                    await asyncio.to_thread(self._run_vad, f.pcm, f.t)
                self.asr.feed(f.pcm, f.t)
                self._arrivals["audio"].append((self._audio.end, f.arrival))
            elif isinstance(f, SourceStatusFrame):
                self._status(f)
            elif isinstance(f, EndFrame):
                self._ended["audio"] += 1
                self._end_arrival = max(self._end_arrival, f.arrival)
                if self._ended["audio"] >= self._providers["audio"]:
                    self.asr.end()
            self._progress.set()

    def _keep_video(self, t: float) -> bool:
        """Subsample to the face profile's frame rate (slot grid, robust to timestamp jitter)."""
        if self._face_first_t is None:
            self._face_first_t = t
        slot = int(math.floor((t - self._face_first_t) * self.face_fps + 0.5))
        if slot <= self._face_fps_slot:
            return False
        self._face_fps_slot = slot
        return True

    async def _video_consumer(self) -> None:
        ch = self._channels["video"]
        while True:
            f = await ch.get()
            if isinstance(f, VideoFrame):
                # Frames that queued up meanwhile are analysed together (one embedding pass).
                batch = [f, *ch.take_media(self.FACE_BATCH - 1)]
                await self._lead_wait(batch[0].t)
                batch = [x for x in batch if self._keep_video(x.t)]
                if not batch:
                    continue
                try:
                    recs = await self.face_stage.process_batch(batch)
                except Exception as e:  # noqa: BLE001 - bad frames are a missing face, not a crash
                    self._pending_errors.append(f"face stage: {type(e).__name__}: {e}")
                    dim = self.face_stage.dim
                    recs = [
                        FaceRecord(
                            x.t,
                            x.arrival,
                            np.zeros(dim, np.float32),
                            False,
                            None,
                            0.0,
                            1.0,
                            0.0,
                            float("inf"),
                            None,
                            0.0,
                        )
                        for x in batch
                    ]
                for x, rec in zip(batch, recs, strict=True):
                    self._video.append(rec)
                    self._arrivals["video"].append((rec.t, x.arrival))
            elif isinstance(f, SourceStatusFrame):
                self._status(f)
            elif isinstance(f, EndFrame):
                self._ended["video"] += 1
                self._end_arrival = max(self._end_arrival, f.arrival)
            self._progress.set()

    # ----------------------------------------------------------------------------------------------
    # windows
    # ----------------------------------------------------------------------------------------------
    def _media_end(self) -> float:
        v_end = self._video.end + 1.0 / self.face_fps if self._video.records or self._video.end else 0.0
        return max(self._audio.end, v_end)

    def _asr_caught_up(self, t_end: float) -> bool:
        if (
            not self.asr.enabled
            or self._ended["audio"] >= self._providers["audio"]
            and self.asr.done.is_set()
        ):
            return True
        return self.asr.processed_until >= t_end - 1e-6

    def _ready(self, t_end: float) -> bool:
        if not (self._live("audio") or self._live("video")):
            # Nothing is delivering media: no data can complete the window. Live streams still get
            # their (all-missing) windows on the wall clock, in _wait_ready.
            return False
        for m, clock in (("audio", self._audio.end), ("video", self._video.end)):
            if self._live(m) and clock < t_end - 1e-6:
                return False
        # Recognition must have heard the window, also after the audio stream ended (it lags behind);
        # not when the audio source is down (then there is nothing left to recognise).
        audio_flowing = self._live("audio") or (
            self._ended["audio"] >= self._providers["audio"] > 0 and not self._is_down("audio")
        )
        return not (audio_flowing and self._audio.end > 0 and not self._asr_caught_up(t_end))

    async def _wait_ready(self, t_end: float) -> bool:
        """True when window ending at ``t_end`` can be processed; False when the streams ended before it."""
        while True:
            if self._all_ended():
                await self.asr.done.wait()
                return self._media_end() >= t_end - 1e-6
            if self._ready(t_end):
                return True
            if self.realtime and self.clock.now() >= t_end + self.cfg.queues.live_wait_s:
                return True  # live: a lagging modality does not hold the stream back
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), timeout=0.05 if self.realtime else 1.0)

    async def _window_loop(self) -> None:
        try:
            while True:
                t_end = self._schedule.next_end()
                if await self._wait_ready(t_end):
                    spec = self._schedule.take()
                    if self._all_ended() and self.asr.done.is_set():
                        spec.final = self._schedule.is_last(self._media_end())
                    await self._process(spec)
                    if spec.final:
                        break
                    continue
                spec = self._schedule.final(self._media_end())
                if spec is not None:
                    await self._process(spec)
                elif self._seq == 0 and (self.errors or any(self._down.values())):
                    # Nothing playable at all (corrupt file, no device): one event says why.
                    await self._process(WindowSpec(0, 0.0, self._media_end(), final=True))
                break
        finally:
            self.finished.set()
            if not self._closed:
                self._events.put_nowait(_STOP)

    def _down_reason(self, m: str, t0: float, t1: float) -> str:
        """Why modality ``m`` had no source during [t0, t1), or ""."""
        if self._providers[m] == 0:
            return f"no {m} source"
        reason, down = "", False
        for t, ok, why in self._down[m]:
            if t >= t1 and t > t0:  # a status at t0 still counts for an empty window [t0, t0]
                break
            down, reason = (not ok), why
        if down:
            return reason
        if self._ended[m] >= self._providers[m] and t1 > (
            self._audio.end if m == "audio" else self._video.end
        ):
            return reason or "stream ended"
        return ""

    def _arrival_of(self, t_end: float) -> float:
        """Monotonic time at which the media completing the window arrived."""
        best = 0.0
        for m in ("audio", "video"):
            for t, arr in self._arrivals[m]:
                if t >= t_end - 1e-6:
                    best = max(best, arr)
                    break
            else:
                if self._arrivals[m]:
                    best = max(best, self._arrivals[m][-1][1], self._end_arrival)
        return best or time.monotonic()

    async def _process(self, spec: WindowSpec) -> None:
        t_ready = self._arrival_of(spec.t_end)
        pcm, coverage = self._audio.slice(spec.t_start, spec.t_end)
        speech = self._audio.speech(spec.t_start, spec.t_end)
        records = self._video.slice(spec.t_start, spec.t_end)
        words = WordTimeline(list(self.asr.committed), list(self.asr.tentative))
        committed, tentative = words.slice(spec.t_start, spec.t_end, self.cfg.text_health.use_tentative)
        asr_error = self.asr.error_for(spec.t_start, spec.t_end)
        reasons = {m: self._down_reason(m, spec.t_start, spec.t_end) for m in ("audio", "video")}
        vad_ms = sum(self._vad_ms)
        self._vad_ms.clear()
        asr_ms, self.asr.iter_ms = self.asr.iter_ms, []
        errors, self._pending_errors = self._pending_errors, []
        inputs = WindowInputs(spec, pcm, coverage, speech, records, committed, tentative, asr_error, reasons)
        try:
            ev = await asyncio.to_thread(self.windows, inputs)
        except Exception as e:  # noqa: BLE001 - keep the sequence gapless: emit a degraded event
            ev = self.windows.failed(spec, f"window processing failed: {type(e).__name__}: {e}")
        ev.errors += errors
        if asr_error:
            ev.errors.append(f"asr: {asr_error}")
        ev.latency_ms["vad"] = vad_ms
        if asr_ms:
            ev.latency_ms["asr"] = float(np.mean(asr_ms))
        ev.dropped = {
            "audio_samples": self._channels["audio"].dropped_samples
            + sum(getattr(s, "dropped_samples", 0) for s in self.sources),
            "video_frames": self._channels["video"].dropped_frames
            + sum(getattr(s, "dropped_frames", 0) for s in self.sources),
        }
        ev.seq = self._seq
        self._seq += 1
        ev.wall_time = time.time()
        ev.e2e_latency_ms = (time.monotonic() - t_ready) * 1e3
        await self._deliver(ev)
        # Bounded memory: drop media that no later window can use.
        # The final window may start one hop earlier than the next regular one.
        keep_from = self._schedule.next_end() - self.cfg.window.hop_s - self.cfg.window.window_s
        self._audio.trim(keep_from)
        self._video.trim(keep_from)
        self.asr.trim(keep_from)
        for m in self._arrivals:
            while len(self._arrivals[m]) > 1 and self._arrivals[m][1][0] < spec.t_end:
                self._arrivals[m].popleft()
        self._progress.set()

    async def _deliver(self, ev: EmotionEvent) -> None:
        if self.keep_events:
            self._events.put_nowait(ev)
        for sink in self.sinks:
            await self._sink_call(sink, sink.handle(ev))

    async def _sink_call(self, sink: Sink, coro: Any) -> None:
        try:
            await coro
        except Exception as e:  # noqa: BLE001 - a broken sink must not stop the stream
            self.errors.append(f"sink {sink.name}: {type(e).__name__}: {e}")
