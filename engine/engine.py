"""The engine: sources -> stages -> windowed fusion -> events -> sinks, and the embedding API.

    async with Engine(config, sources=[FileReplaySource("clip.flv", fast=True)]) as eng:
        async for event in eng.events():
            ...

    eng = Engine(config)                  # no sources given: a push source (audio + video)
    async with eng:
        eng.push_audio(pcm, sr, t)        # from any thread
        eng.push_frame(rgb, t)
        eng.end_of_stream()

This module is the composition root. The parts:

- ``engine/core/media.py``: the media timeline and readiness (``engine/core/timeline.py``: the timelines
  and the window schedule);
- ``engine/core/consumers.py``: one consumer per modality (audio: VAD; video: face stage);
- ``engine/core/window_loop.py``: windows in order, each with its recognition pass (``stages/asr.py``)
  and the window's steps (``stages/window_steps.py``, run by ``stages/window_processor.py``).

Tasks (all held by the engine, all cancelled on close): one per source, one consumer per modality,
and the window loop. Blocking work (decoding, models) runs in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import EngineConfig
from engine.core.channel import FrameChannel
from engine.core.consumers import AudioConsumer, Backpressure, VideoConsumer
from engine.core.loading import load_models
from engine.core.media import MediaState
from engine.core.window_loop import StreamFeed, WindowLoop
from engine.frames import AudioFrame, EmotionEvent, EndFrame, Frame, SourceStatusFrame, VideoFrame
from engine.sinks.base import Sink
from engine.sinks.runner import SinkRunner
from engine.sources.base import MediaClock, Source
from engine.sources.file_replay import FileReplaySource
from engine.sources.push import PushSource
from engine.stages.asr import StreamingASR
from engine.stages.face import FaceStage
from engine.stages.fusion import FusionModel, FusionStage
from engine.stages.vad import SileroVAD
from engine.stages.window_processor import WindowProcessor

_STOP = object()
UNTRAINED_BANNER = (
    "UNTRAINED MODEL: checkpoint none was asked for, so the fused emotion probabilities come from a "
    "randomly initialised CM-ARR and mean nothing. Modality health, transcripts, face tracking and the "
    "face expert reading are real. Drop --checkpoint none to use the shipped model."
)


class Engine:
    def __init__(
        self,
        config: EngineConfig | None = None,
        sources: Sequence[Source] | None = None,
        sinks: Sequence[Sink] = (),
        *,
        extractors: Any | None = None,
        fusion: FusionModel | None = None,
        backend: Any | None = None,
        recogniser: Any | None = None,
        keep_events: bool = True,
        announce_untrained: bool = True,
        video: str | Path | None = None,
        audio: str | Path | None = None,
        fast: bool = False,
    ) -> None:
        """``sources``: what to read. Shortcuts: ``video``/``audio`` paths replay files (``fast``: as fast as
        possible); with neither and no sources, the engine takes pushed media (``push_audio``/``push_frame``).
        ``extractors``/``fusion``/``backend``: already loaded models to share between engines;
        ``recogniser``: the Whisper decoder to use instead of ``extractors.asr`` (a server's
        ``BatchingRecogniser``, shared by its streams)."""
        self.cfg = config or EngineConfig()
        if sources is None and (video or audio):
            sources = _replay_sources(video, audio, fast)
        self.sources: list[Source] = list(sources) if sources is not None else [PushSource()]
        self.sinks = list(sinks)
        self.extractors = extractors
        self.fusion_model = fusion
        self.backend = backend
        self.recogniser = recogniser
        self.keep_events = keep_events
        self.announce_untrained = announce_untrained
        self._owns_extractors = False
        self.realtime = any(s.realtime for s in self.sources)
        self.feed = StreamFeed(self.sources)  # what the stream's tasks hand its windows
        self._tasks: list[asyncio.Task] = []
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._started = False
        self._closed = False
        self.finished = asyncio.Event()
        self.errors = self.feed.errors  # engine-level errors (sources, sinks), also copied into events
        self.failure: str | None = None  # why the stream stopped early (``fail``); None: it did not
        self._providers = {m: sum(m in s.modalities for s in self.sources) for m in ("audio", "video")}
        self.loop: WindowLoop | None = None
        self._sink_runner: SinkRunner | None = None

    # ----------------------------------------------------------------------------------------------
    # lifecycle
    # ----------------------------------------------------------------------------------------------
    def _load(self) -> None:
        """Blocking: models and backend (worker thread)."""
        loaded = load_models(self.cfg, self.extractors, self.fusion_model, self.backend)
        self.extractors, self.fusion_model, self.backend = loaded.extractors, loaded.fusion, loaded.backend
        self._owns_extractors = loaded.owns_extractors
        try:
            self.vad = SileroVAD() if self.cfg.vad else None
        except BaseException:
            if loaded.owns_extractors:
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
        processor = self._build_stages()
        self._build_flow(processor)
        self._sink_runner = SinkRunner(
            self.sinks, self.errors.append, self.cfg.queues.sink_drain_s, on_fatal=self.fail
        )
        await self._sink_runner.start(self.describe())
        self.feed.clock = MediaClock()  # media time counts from here
        spawn = self._tasks.append
        for src in self.sources:
            spawn(asyncio.create_task(self._run_source(src), name=f"source:{src.name}"))
        spawn(asyncio.create_task(self.audio_consumer.run(), name="audio"))
        spawn(asyncio.create_task(self.video_consumer.run(), name="video"))
        spawn(asyncio.create_task(self._run_windows(), name="windows"))

    def _build_stages(self) -> WindowProcessor:
        """This stream's stages over the loaded models: fusion, its own face tracker, the media
        timeline, streaming recognition, and the window's steps."""
        cfg, ex = self.cfg, self.extractors
        assert ex is not None and self.fusion_model is not None
        self.fusion = FusionStage(self.fusion_model, self.backend)
        # Extractors may be shared between engines: each stream tracks its own face.
        face = ex.face.for_stream() if hasattr(ex.face, "for_stream") else ex.face
        self.face_stage = FaceStage(face, ex.dims["video"])
        self.face_stage.reset()
        profile = getattr(ex, "profile", None)
        self.media = MediaState(self._providers, float(profile.face.fps) if profile is not None else 30.0)
        self.asr = StreamingASR(
            (self.recogniser or ex.asr) if cfg.asr.enabled else None,
            cfg.asr,
            cfg.window.hop_s,
            cfg.asr.span(cfg.window.window_s),
        )
        return WindowProcessor(
            cfg, ex, self.fusion, self.fusion_model, vad_enabled=self.vad is not None, asr=self.asr
        )

    def _build_flow(self, processor: WindowProcessor) -> None:
        """Channels from the sources, the consumers that fill the timeline, the window loop, and the
        backpressure that holds a fast source to the windows."""
        cfg = self.cfg
        self._channels = {
            "audio": FrameChannel(cfg.queues.audio_frames, lossless=not self.realtime, policy="drop_new"),
            "video": FrameChannel(cfg.queues.video_frames, lossless=not self.realtime, policy="latest"),
        }
        self.feed.channels = self._channels
        self.loop = WindowLoop(cfg, self.media, processor, self._deliver, self.feed, realtime=self.realtime)
        self._lead = Backpressure(
            self.media, self.loop.schedule.next_end, cfg.queues.max_lead_s, self.realtime
        )
        self.audio_consumer = AudioConsumer(
            self._channels["audio"], self.media, self.vad, self._lead, self.feed.vad_ms
        )
        self.video_consumer = VideoConsumer(
            self._channels["video"], self.media, self.face_stage, self._lead, self.feed.pending_errors.append
        )

    @property
    def events_emitted(self) -> int:
        """Events emitted so far (the next event's ``seq``)."""
        return self.loop.seq if self.loop else 0

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
        return self.events_emitted

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.loop is not None:
            self._lead.closed = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for src in self.sources:
            try:
                src.close()
            except Exception as e:  # noqa: BLE001 - closing a broken device must not mask the run
                self.errors.append(f"closing {src.name}: {e}")
        if self._sink_runner is not None:
            await self._sink_runner.close()  # each sink takes what is queued for it (bounded wait)
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
            await src.run(emit, self.feed.clock)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a failing source is a missing modality, not a crash
            msg = f"source {src.name} failed: {type(e).__name__}: {e}"
            self.errors.append(msg)
            self.feed.pending_errors.append(msg)
            for m in src.modalities:
                await self._emit(SourceStatusFrame(m, False, msg, last_t, src.name))
        if not ended:
            await self._emit(EndFrame(src.name, last_t))

    # ----------------------------------------------------------------------------------------------
    # windows and delivery
    # ----------------------------------------------------------------------------------------------
    def fail(self, reason: str, *, logged: bool = False) -> None:
        """Stop the stream on a fault it cannot carry on from (the window loop itself, a sink that must
        not lose events): logged once, kept in ``failure`` and ``errors``; ``wait`` returns at once."""
        if self.failure is not None:
            return
        self.failure = reason
        self.errors.append(reason)
        if not logged:
            logging.getLogger("engine").error("stream %s stopped: %s", self.cfg.stream, reason)
        self.finished.set()
        for t in self._tasks:
            if t.get_name() == "windows" and t is not asyncio.current_task():
                t.cancel()

    async def _run_windows(self) -> None:
        assert self.loop is not None
        try:
            await self.loop.run()
        except Exception as e:  # noqa: BLE001 - never silence: the stream ends with the reason
            logging.getLogger("engine").exception("window loop of stream %s failed", self.cfg.stream)
            self.fail(f"window loop failed: {type(e).__name__}: {e}", logged=True)
        finally:
            self.finished.set()
            if not self._closed:
                self._events.put_nowait(_STOP)

    async def _deliver(self, ev: EmotionEvent) -> None:
        if self.keep_events:
            self._events.put_nowait(ev)
        if self._sink_runner is not None:
            self._sink_runner.put(ev)  # sinks run on their own tasks: a slow one never holds windows back


def _replay_sources(video: str | Path | None, audio: str | Path | None, fast: bool) -> list[Source]:
    """The ``video``/``audio`` shortcut: a file's replay (with its audio track unless ``audio`` names
    another file), and an audio file's."""
    sources: list[Source] = []
    if video:
        sources.append(FileReplaySource(video, fast=fast, audio=not audio))
    if audio:
        name = f"{Path(audio).name}:audio"
        sources.append(FileReplaySource(audio, fast=fast, video=False, name=name))
    return sources
