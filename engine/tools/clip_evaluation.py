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
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.config import DEFAULT_CONFIG, MODELS, EngineConfig
from engine.core.shared import SharedModels
from engine.engine import UNTRAINED_BANNER
from engine.tools.clip_config import compare_config, engine_config
from engine.tools.clip_replay import replay_all
from engine.tools.clip_report import (
    build_report,
    comparison_text,
    finish_report,
    json_safe,
    summary_text,
)
from engine.tools.labelled_clips import Clip, Listing, UsageError, list_clips


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


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _selected_clips(listing: Listing, args: argparse.Namespace) -> list[Clip]:
    """The labelled clips to replay: with --tracks video only those with a video file, at most --limit."""
    clips = listing.clips
    if args.tracks == "video":
        clips = [c for c in clips if not c.audio_only]
    clips = clips[: args.limit] if args.limit else clips
    if not clips:
        raise UsageError(f"no media file under {args.root} has a label in labels.csv")
    return clips


def _load_models(cfg: EngineConfig) -> SharedModels:
    try:
        return SharedModels.load(cfg)
    except (ValueError, FileNotFoundError) as e:  # a bad checkpoint or profile: the user's input
        raise UsageError(f"cannot load the models: {e}") from None


def _compare_report(
    name: str,
    ccfg: EngineConfig,
    clips: Sequence[Clip],
    listing: Listing,
    models: SharedModels,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The report of one --compare model: the same clips and extractors, its own fusion and backend."""
    try:
        other = models.with_fusion(ccfg)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(f"cannot load --compare {name}: {e}") from None
    try:
        _log(f"--compare {name}: {other.fusion.identity}")
        res = asyncio.run(replay_all(clips, ccfg, other, args.fast, _log, args.tracks))
        return build_report(res, listing, other, [f"compare={name}"], args.config)
    finally:
        other.backend.close()


def _evaluate(
    clips: Sequence[Clip],
    listing: Listing,
    cfg: EngineConfig,
    overrides: Sequence[str],
    compare: Sequence[tuple[str, EngineConfig]],
    models: SharedModels,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """One report for the configured model, then one per --compare model."""
    if not models.fusion.trained:
        _log(UNTRAINED_BANNER)
    results = asyncio.run(replay_all(clips, cfg, models, args.fast, _log, args.tracks))
    reports = [build_report(results, listing, models, overrides, args.config)]
    for name, ccfg in compare:
        reports.append(_compare_report(name, ccfg, clips, listing, models, args))
    return reports


def run(args: argparse.Namespace) -> int:
    listing = list_clips(Path(args.root))
    cfg, overrides = engine_config(args)
    clips = _selected_clips(listing, args)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    compare = [compare_config(cfg, c) for c in args.compare]  # fail fast, before any model loads
    _log(f"loading models ({len(clips)} clips to replay)...")
    models = _load_models(cfg)
    try:
        reports = _evaluate(clips, listing, cfg, overrides, compare, models, args)
    finally:
        models.close()
    report = finish_report(reports, args.tracks)
    out.write_text(json.dumps(json_safe(report), indent=2) + "\n")
    for r in reports:
        _log(summary_text(r))
    if len(reports) > 1:
        _log(comparison_text(report["comparison"]))
    _log(f"report written to {out}")
    return 0


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
