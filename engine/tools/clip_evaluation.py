"""Evaluate the live engine on a folder of labelled clips.

    python -m engine.evaluate --root DIR --json OUT [--fast] [--checkpoint C] [--config YAML]
                              [--set key=value ...] [--limit N]

``DIR`` holds media files, found recursively and matched by file stem: video (.flv .mp4 .avi .mkv .mov
.webm) and/or audio (.wav .flac .mp3 .ogg .m4a). A stem with a video file is replayed as that file with
its own audio track (an audio file of the same stem is then not used); a stem with only an audio file is
replayed as audio only. ``DIR/labels.csv`` has the columns ``name,label`` (name = file stem; labels are
normalised, so "angry" and "ANG" both read "ang"). Stems without a label are skipped and listed.

Every clip is replayed through the real engine (``Engine`` with a ``FileReplaySource``): the same
sources, extractors, modality health, windows and fusion as ``run_live.py``, at real-time pace or, with
``--fast``, as fast as the engine goes. The extractors, the fusion model and its backend are loaded once
and shared by all clips.

Clip rule: a clip's prediction is the argmax of the mean of its events' ``probs`` (the fused
probabilities each event carries, after whatever calibration and smoothing the engine applies) over the
events that have probabilities. A clip
none of whose events has probabilities gets no prediction and counts as wrong. A clip's condition is
the availability set (``"tav"``, ``"ta"``, ``"v"``, ...) most frequent among those same events (ties:
the larger set), ``""`` when there are none.

A file that cannot be read (no audio or video decoded, or the engine failed on it) is listed with its
error, left out of the scores, and the run goes on. Only clips whose label is one of the fusion model's
classes are scored (WAR, UAR, per condition, confusion matrix); the others are listed with
``counted: false``.

Exit status: 0 when the run completed (also when some files failed), 2 for bad input (no such folder, no
labels.csv, no media, an unknown ``--set`` key, a checkpoint that cannot be loaded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine.backends import preflight
from engine.config import (
    DEFAULT_CONFIG,
    MODELS,
    EngineConfig,
    build_engine_config,
    engine_shortcuts,
    resolve_path,
)
from engine.core.shared import SharedModels
from engine.engine import UNTRAINED_BANNER
from engine.frames import AudioFrame, EmotionEvent, Frame, SourceStatusFrame, VideoFrame
from engine.sources.base import Emit, MediaClock
from engine.sources.file_replay import FileReplaySource
from engine.tools.clip_scores import ClipResult, clip_condition, clip_experts, clip_prediction, summarise
from engine.tools.labelled_clips import Clip, Listing, UsageError, list_clips

__all__ = ["CLIP_RULE", "UsageError", "list_clips", "main", "replay_clip"]

CLIP_RULE = (
    "pred = argmax of the mean of the clip's event probs over the events that have probs; "
    "no such event -> pred null, counted as wrong"
)




# --------------------------------------------------------------------------------------------------
# replay
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# scores and report
# --------------------------------------------------------------------------------------------------


def build_report(
    results: Sequence[ClipResult],
    listing: Listing,
    models: SharedModels,
    overrides: Sequence[str],
    config_file: str | None,
) -> dict[str, Any]:
    fm = models.fusion
    return {
        "model": fm.identity,
        "trained": bool(fm.trained),
        "class_names": list(fm.class_names),
        "rule": CLIP_RULE,
        "config": list(overrides),
        "config_file": config_file,
        "clips": [asdict(r) for r in results],
        **summarise(results, fm.class_names),
        "skipped": listing.skipped,
        "labels_without_media": listing.unmatched_labels,
    }


def _clip_line(r: ClipResult) -> str:
    mark = "ok " if r.pred is not None and r.pred == r.label else "-- "
    if r.error:
        return f"ERR {r.name}: {r.error}"
    return (
        f"{mark}{r.name}: label {r.label} pred {r.pred} [{r.condition or '-'}] {r.events} events "
        f"{r.seconds:.1f}s" + ("" if r.counted else " (not scored)")
    )


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def summary_text(report: dict[str, Any]) -> str:
    o = report["overall"]
    failed = sum(1 for c in report["clips"] if c["error"])
    lines = [
        f"model {report['model']} (trained: {report['trained']}); {len(report['clips'])} clips, "
        f"{failed} unreadable, {len(report['skipped'])} without a label",
        f"overall: WAR {_pct(o['war'])}  UAR {_pct(o['uar'])}  n={o['n']}",
    ]
    for k, s in report["by_condition"].items():
        lines.append(f"  {k or '(none)':>6}: WAR {_pct(s['war'])}  UAR {_pct(s['uar'])}  n={s['n']}")
    return "\n".join(lines)


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m engine.evaluate",
        description="Replay a folder of labelled clips through the live engine and score clip predictions.",
    )
    ap.add_argument("--root", required=True, help="folder of media files with labels.csv (name,label)")
    ap.add_argument("--json", required=True, metavar="OUT", help="write the report here")
    ap.add_argument("--fast", action="store_true", help="replay as fast as possible, not at real-time pace")
    ap.add_argument("--model", choices=sorted(MODELS), help="fusion model family: its shipped checkpoint")
    ap.add_argument("--checkpoint", metavar="PATH", help="trained fusion checkpoint (.safetensors)")
    ap.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="MODEL_OR_PATH",
        help="also score this fusion model (a family name such as cider, a checkpoint, or rule=learned / "
        "rule=product: the same checkpoint under another fusion rule) on the same clips with the same "
        "extractors (repeatable)",
    )
    ap.add_argument(
        "--config", metavar="YAML", help=f"engine config (default configs/engine/{DEFAULT_CONFIG.name})"
    )
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value (repeatable)"
    )
    ap.add_argument("--limit", type=int, metavar="N", help="evaluate the first N labelled clips only")
    ap.add_argument(
        "--tracks",
        choices=("all", "audio", "video"),
        default="all",
        help="replay every track (default), or only the audio or only the video of each file "
        "(files without that track are skipped)",
    )
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be >= 1")
    return args


def engine_config(args: argparse.Namespace) -> tuple[EngineConfig, list[str]]:
    """The engine config (same precedence as run_live.py) and the overrides it was built with."""
    if args.config and not resolve_path(args.config).is_file():
        raise UsageError(f"--config {args.config} does not exist")
    config = str(resolve_path(args.config)) if args.config else None
    try:
        overrides = [*args.set, *engine_shortcuts(checkpoint=args.checkpoint, model=args.model)]
        cfg = build_engine_config(config, args.set, checkpoint=args.checkpoint, model=args.model)
        preflight(cfg.backend.name, cfg.backend.device)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    return cfg, overrides


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    listing = list_clips(Path(args.root))
    cfg, overrides = engine_config(args)
    clips = listing.clips
    if args.tracks == "video":
        clips = [c for c in clips if not c.audio_only]
    clips = clips[: args.limit] if args.limit else clips
    if not clips:
        raise UsageError(f"no media file under {args.root} has a label in labels.csv")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    compare = [compare_config(cfg, c) for c in args.compare]  # fail fast, before any model loads
    _log(f"loading models ({len(clips)} clips to replay)...")
    try:
        models = SharedModels.load(cfg)
    except (ValueError, FileNotFoundError) as e:  # a bad checkpoint or profile: the user's input
        raise UsageError(f"cannot load the models: {e}") from None
    reports = []
    try:
        if not models.fusion.trained:
            _log(UNTRAINED_BANNER)
        results = asyncio.run(replay_all(clips, cfg, models, args.fast, _log, args.tracks))
        reports.append(build_report(results, listing, models, overrides, args.config))
        for name, ccfg in compare:
            try:
                other = models.with_fusion(ccfg)
            except (ValueError, FileNotFoundError) as e:
                raise UsageError(f"cannot load --compare {name}: {e}") from None
            try:
                _log(f"--compare {name}: {other.fusion.identity}")
                res = asyncio.run(replay_all(clips, ccfg, other, args.fast, _log, args.tracks))
                reports.append(build_report(res, listing, other, [f"compare={name}"], args.config))
            finally:
                other.backend.close()
    finally:
        models.close()
    report = reports[0]
    report["tracks"] = args.tracks
    if len(reports) > 1:
        report["comparison"] = comparison(reports)
    out.write_text(json.dumps(_json_safe(report), indent=2) + "\n")
    for r in reports:
        _log(summary_text(r))
    if len(reports) > 1:
        _log(comparison_text(report["comparison"]))
    _log(f"report written to {out}")
    return 0


def compare_config(cfg: EngineConfig, what: str) -> tuple[str, EngineConfig]:
    """The engine config of a ``--compare`` model: a family name (its shipped checkpoint), a path, or
    ``rule=NAME``: the same checkpoint under another fusion rule (``fusion.rule``)."""
    import dataclasses

    from engine.config import FusionRuleConfig
    from engine.stages.fusion import check_checkpoint

    if what.startswith("rule="):
        try:
            return what, dataclasses.replace(cfg, fusion=FusionRuleConfig(what.split("=", 1)[1]))
        except ValueError as e:
            raise UsageError(f"--compare {what}: {e}") from None
    if what in MODELS:
        ckpt, arch = MODELS[what]
    else:
        ckpt, arch = what, cfg.model_config
    other = dataclasses.replace(cfg, checkpoint=ckpt, model_config=arch)
    try:
        check_checkpoint(other)
    except FileNotFoundError as e:
        raise UsageError(f"--compare {what}: {e}") from None
    return what, other


def comparison(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per model: overall and per-condition scores on the same clips, and the per-clip predictions."""
    return {
        "models": [
            {"model": r["model"], "overall": r["overall"], "by_condition": r["by_condition"]} for r in reports
        ],
        "clips": [
            {"name": c["name"], "label": c["label"], "pred": [r["clips"][i]["pred"] for r in reports]}
            for i, c in enumerate(reports[0]["clips"])
        ],
    }


def comparison_text(comp: dict[str, Any]) -> str:
    lines = ["same clips, same extractors:"]
    for m in comp["models"]:
        o = m["overall"]
        lines.append(f"  {m['model']}: WAR {_pct(o['war'])}  UAR {_pct(o['uar'])}  n={o['n']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's native INFO lines
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args = parse_args(argv)
    except SystemExit as e:  # argparse: usage errors (2) and --help (0)
        return int(e.code or 0)
    try:
        return run(args)
    except UsageError as e:
        _log(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        return 130
