"""Record real fusion inputs for int8 calibration: ``python -m engine.calibrate --out calib.npz CLIPS...``

Every file (or every media file under a folder) is replayed through the engine as fast as it decodes,
with the model that the int8 engine will serve (``--model`` / ``--checkpoint`` / ``--config`` /
``--set``, as in run_live.py). The windows the fusion graph receives are recorded as they are, then
(unless ``--as-recorded``) each under every subset of its modalities with the others dropped, so the
reconstruction paths are calibrated too. The ``.npz`` names the model it was recorded for; use it with
``--set backend.name=tensorrt --set backend.precision=int8 --set backend.calibration=calib.npz``.

Calibrate on recordings like the ones you will serve (microphone, room, camera) and never on the clips
you evaluate on.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.backends.graphs import save_calibration, with_dropped_modalities
from engine.backends.recording import RecordingBackend
from engine.config import BackendConfig, EngineConfig, build_engine_config
from engine.tools.labelled_clips import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS, Clip, UsageError, index_media

log = logging.getLogger("engine")


@dataclass
class RecordedWindows:
    samples: list[dict[str, np.ndarray]]  # modality -> [L, D] as the fusion graph got them, "avail" -> [3]
    failed: list[str]  # files that could not be replayed, with why


def media_files(inputs: Sequence[str]) -> list[Path]:
    """The files named, and the media files under the folders named; fails on anything else."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = {**index_media(p, AUDIO_EXTENSIONS), **index_media(p, VIDEO_EXTENSIONS)}
            if not found:
                raise UsageError(
                    f"{p} holds no media files ({' '.join(VIDEO_EXTENSIONS + AUDIO_EXTENSIONS)})"
                )
            out.extend(sorted(found.values()))
        elif p.is_file():
            out.append(p)
        else:
            raise UsageError(f"{p} does not exist")
    return list(dict.fromkeys(out))


def record_windows(
    models: Any, cfg: EngineConfig, paths: Sequence[Path], limit: int = 100_000
) -> RecordedWindows:
    """Replay ``paths`` (as fast as they decode) through engines on ``models`` and record the fusion
    windows, at most ``limit``. ``models.backend`` is wrapped while it runs and restored after."""
    from engine.tools.clip_replay import replay_clip

    recorder = RecordingBackend(models.backend, limit=limit)
    inner, models.backend = models.backend, recorder
    failed = []
    try:
        for path in paths:
            if len(recorder.samples) >= limit:
                break
            clip = Clip(path.stem, "", path, path.suffix.lower() not in VIDEO_EXTENSIONS)
            r = asyncio.run(replay_clip(clip, cfg, models, fast=True))
            if r.error:
                failed.append(f"{path.name}: {r.error}")
            log.info("%s: %d windows so far", path.name, len(recorder.samples))
    finally:
        models.backend = inner
    return RecordedWindows(recorder.samples, failed)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m engine.calibrate", description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", metavar="CLIP_OR_FOLDER", help="media files or folders of them")
    ap.add_argument("--out", required=True, metavar="NPZ", help="write the calibration data here")
    ap.add_argument("--model", help="fusion model family (its shipped checkpoint), as in run_live.py")
    ap.add_argument("--checkpoint", metavar="PATH", help="trained fusion checkpoint (.safetensors)")
    ap.add_argument("--config", metavar="YAML", help="engine config")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    ap.add_argument("--max-windows", type=int, default=2000, help="stop recording after this many windows")
    ap.add_argument(
        "--as-recorded",
        action="store_true",
        help="keep each window as recorded only (no variants with modalities dropped)",
    )
    args = ap.parse_args(argv)
    if args.max_windows < 1:
        ap.error("--max-windows must be >= 1")
    return args


def run(args: argparse.Namespace) -> dict[str, object]:
    from engine.core.shared import SharedModels

    files = media_files(args.inputs)
    try:
        cfg = build_engine_config(args.config, args.set, checkpoint=args.checkpoint, model=args.model)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    # The inputs do not depend on the backend: record through the fp32 graph on the CPU.
    cfg = dataclasses.replace(cfg, backend=BackendConfig(threads=cfg.backend.threads))
    try:
        models = SharedModels.load(cfg)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(f"cannot load the models: {e}") from None
    try:
        rec = record_windows(models, cfg, files, args.max_windows)
    finally:
        models.close()
    windows = rec.samples
    samples = windows if args.as_recorded else with_dropped_modalities(windows)
    out = save_calibration(samples, args.out, models.fusion.cache_key, models.fusion.dims)
    masks = Counter("".join("tav"[i] for i in range(3) if s["avail"][i] > 0) or "none" for s in samples)
    return {
        "out": str(out),
        "model_id": models.fusion.cache_key,
        "files": len(files),
        "failed": rec.failed,
        "windows": len(windows),
        "samples": len(samples),
        "masks": dict(sorted(masks.items())),
    }


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)  # one progress line per file
    try:
        args = parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        summary = run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # nothing recorded
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0
