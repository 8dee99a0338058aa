"""Replaying labelled clips through the live engine on shared models, one ``ClipResult`` per clip."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.config import EngineConfig
from engine.core.shared import SharedModels
from engine.frames import AudioFrame, EmotionEvent, Frame, SourceStatusFrame, VideoFrame
from engine.sources.base import Emit, MediaClock
from engine.sources.file_replay import FileReplaySource
from engine.tools.clip_scores import ClipResult, clip_condition, clip_experts, clip_prediction
from engine.tools.labelled_clips import Clip


class TrackedReplay(FileReplaySource):
    """A file replay that records whether any media was decoded and which failures the file reported
    before (``failures``) and after (``late_failures``) the first decoded frame."""

    def __init__(self, path: Path, **kw: Any) -> None:
        super().__init__(path, **kw)
        self.media_frames = 0
        self.failures: list[str] = []
        self.late_failures: list[str] = []

    async def run(self, emit: Emit, clock: MediaClock) -> None:
        async def tracked(frame: Frame) -> None:
            if isinstance(frame, AudioFrame | VideoFrame):
                self.media_frames += 1
            elif isinstance(frame, SourceStatusFrame) and not frame.ok:
                seen = self.late_failures if self.media_frames else self.failures
                if frame.reason not in seen:
                    seen.append(frame.reason)
            await emit(frame)

        await super().run(tracked, clock)


def _dedupe(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


async def _run_engine(
    src: TrackedReplay, cfg: EngineConfig, models: SharedModels
) -> tuple[list[EmotionEvent], str | None, list[str]]:
    """A fresh engine on ``src``: its events, the exception that stopped it (if any) and its errors."""
    events: list[EmotionEvent] = []
    error: str | None = None
    engine_errors: list[str] = []
    try:
        eng = models.engine(cfg, [src])
        async with eng:
            async for ev in eng.events():
                events.append(ev)
        engine_errors = list(eng.errors)
    except Exception as e:  # noqa: BLE001 - one broken file must not stop the run
        error = f"{type(e).__name__}: {e}"
    return events, error, engine_errors


async def replay_clip(
    clip: Clip, cfg: EngineConfig, models: SharedModels, fast: bool, tracks: str = "all"
) -> ClipResult:
    """Replay one file through a fresh engine on the shared models (``tracks``: "all", or only the
    file's "audio" or "video" track, e.g. to score the face alone on audio-visual clips)."""
    t0 = time.perf_counter()
    names = models.fusion.class_names
    src = TrackedReplay(
        clip.path, fast=fast, video=not clip.audio_only and tracks != "audio", audio=tracks != "video"
    )
    events, error, engine_errors = await _run_engine(src, cfg, models)
    if error is None and src.media_frames == 0:
        why = "; ".join(_dedupe(src.failures + engine_errors))
        error = "no audio or video decoded" + (f": {why}" if why else "")
    pred, probs = clip_prediction(events, names) if error is None else (None, None)
    return ClipResult(
        name=clip.name,
        label=clip.label,
        counted=error is None and clip.label in names,
        pred=pred,
        probs=probs,
        events=len(events),
        condition=clip_condition(events) if error is None else "",
        error=error,
        seconds=round(time.perf_counter() - t0, 3),
        warnings=[] if error else _dedupe(src.late_failures + engine_errors),
        experts=clip_experts(events, names) if error is None else {},
    )


async def replay_all(
    clips: Sequence[Clip],
    cfg: EngineConfig,
    models: SharedModels,
    fast: bool,
    log: Any = None,
    tracks: str = "all",
) -> list[ClipResult]:
    out: list[ClipResult] = []
    for i, clip in enumerate(clips, 1):
        r = await replay_clip(clip, cfg, models, fast, tracks)
        out.append(r)
        if log is not None:
            log(f"[{i}/{len(clips)}] {_clip_line(r)}")
    return out


def _clip_line(r: ClipResult) -> str:
    mark = "ok " if r.pred is not None and r.pred == r.label else "-- "
    if r.error:
        return f"ERR {r.name}: {r.error}"
    return (
        f"{mark}{r.name}: label {r.label} pred {r.pred} [{r.condition or '-'}] {r.events} events "
        f"{r.seconds:.1f}s" + ("" if r.counted else " (not scored)")
    )
