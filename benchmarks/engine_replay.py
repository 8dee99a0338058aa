"""Replay the bundled CREMA-D clips through the whole engine with --fast and report, as JSON:

- real-time factor (wall time / media time; below 1 is faster than real time), per clip and overall;
- per-stage latency p50/p95/p99 (ms) from the events' ``latency_ms``;
- end-to-end event latency p50/p95/p99 (ms: from the arrival of a window's last media to its event);
- peak RSS of the process (MiB).

Variants (fusion backends) run in one process on the same loaded extractors, and the report gives
each variant's ratios to the first one.

    python benchmarks/engine_replay.py                       # onnxruntime vs torch, all six clips
    python benchmarks/engine_replay.py --backends onnxruntime --clips ANG,SAD --repeat 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GLOG_minloglevel", "2")

from engine import Engine, load_engine_config, load_extractors  # noqa: E402
from engine.sources import FileReplaySource  # noqa: E402
from engine.stages.fusion import build_backend, load_fusion_model  # noqa: E402

CLIPS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


def pct(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    a = np.asarray(xs, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "n": int(a.size)}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


async def replay(cfg: Any, path: Path, ex: Any, fm: Any, backend: Any) -> tuple[list[Any], float]:
    t0 = time.perf_counter()
    eng = Engine(cfg, [FileReplaySource(path, fast=True)], extractors=ex, fusion=fm, backend=backend)
    async with eng:
        events = [ev async for ev in eng.events()]
    return events, time.perf_counter() - t0


def run_variant(name: str, cfg: Any, clips: list[Path], ex: Any, fm: Any, repeat: int) -> dict[str, Any]:
    cfg.backend.name = name
    t_build = time.perf_counter()
    backend = build_backend(fm, cfg)
    build_s = time.perf_counter() - t_build
    stages: dict[str, list[float]] = {}
    e2e: list[float] = []
    per_clip = []
    wall_total = media_total = 0.0
    for rep in range(repeat):
        for clip in clips:
            events, wall = asyncio.run(replay(cfg, clip, ex, fm, backend))
            media = max(e.t_end for e in events)
            wall_total += wall
            media_total += media
            per_clip.append({"clip": clip.stem, "repeat": rep, "events": len(events), "media_s": media,
                             "wall_s": wall, "rtf": wall / media,
                             "states": [[e.modalities[m].state[0] for m in ("text", "audio", "video")]
                                        for e in events]})
            for e in events:
                for k, v in e.latency_ms.items():
                    stages.setdefault(k, []).append(float(v))
                e2e.append(float(e.e2e_latency_ms))
    backend.close()
    return {"backend": name, "backend_build_s": build_s, "rtf": wall_total / media_total,
            "wall_s": wall_total, "media_s": media_total,
            "stages_ms": {k: pct(v) for k, v in sorted(stages.items())}, "e2e_latency_ms": pct(e2e),
            "peak_rss_mib_after": peak_rss_mib(), "clips": per_clip}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="onnxruntime,torch", help="comma-separated fusion backends")
    ap.add_argument("--clips", default=",".join(CLIPS), help="comma-separated CREMA-D emotions of actor 1001")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--config", default=str(ROOT / "configs" / "engine" / "default.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="engine config override")
    ap.add_argument("--out", help="also write the JSON report here")
    args = ap.parse_args(argv)
    cfg = load_engine_config(args.config, args.set)
    clips = [ROOT / "data" / "cremad" / f"1001_DFA_{c.strip().upper()}_XX.flv" for c in args.clips.split(",")]
    t0 = time.perf_counter()
    ex = load_extractors(cfg)
    fm = load_fusion_model(cfg, ex.describe(), ex.dims)
    load_s = time.perf_counter() - t0
    rss_loaded = peak_rss_mib()
    variants = [run_variant(b.strip(), cfg, clips, ex, fm, args.repeat) for b in args.backends.split(",")]
    base = variants[0]
    for v in variants:
        v["ratio_to_" + base["backend"]] = {
            "rtf": v["rtf"] / base["rtf"],
            "fusion_p50": (v["stages_ms"]["fusion"]["p50"] / base["stages_ms"]["fusion"]["p50"]
                           if "fusion" in v["stages_ms"] and "fusion" in base["stages_ms"] else None),
            "e2e_p50": v["e2e_latency_ms"]["p50"] / base["e2e_latency_ms"]["p50"],
        }
    report = {
        "benchmark": "engine_replay", "mode": "fast replay, CPU", "model": fm.identity,
        "extractors": ex.profile.name, "window": {"window_s": cfg.window.window_s, "hop_s": cfg.window.hop_s},
        "load_s": load_s, "peak_rss_mib_after_load": rss_loaded, "peak_rss_mib": peak_rss_mib(),
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "variants": variants,
    }
    ex.close()
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
