"""What the fusion rule costs: the shipped checkpoint's product and learned graphs in one run.

    python -m benchmarks.fusion_rules [--backend onnxruntime] [--iters 300] [--json out/fusion_rules.json]

Both rules are the same exported graph but for a few gathers and products at its end, so the product
rule's target is at most 1 ms more per window. Per rule and availability set: p50 / p95 of one window
(batch 1; lengths of a 4-s window: 12 tokens, 200 speech frames, 40 face frames) through the engine's
fusion stage (normalisation, backend, temperature), interleaved rule by rule so that machine noise hits
both alike; and the product/learned ratio of the p50s. Prints JSON.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import emit
from engine.backends import create_backend
from engine.config import SHIPPED_CHECKPOINT, load_engine_config, resolve_path
from engine.stages.fusion import FusionStage, load_fusion_model
from engine.tools.latency_stats import percentiles
from models.checkpoint import read_metadata
from models.fusion_meta import FusionMeta
from models.modalities import CONDITIONS, MODALITIES

LENGTHS = {"text": 12, "audio": 200, "video": 40}
TARGET_MS = 1.0


def stage_for(rule: str, backend: str, cache: str, threads: int) -> FusionStage:
    meta = FusionMeta.from_extra(read_metadata(resolve_path(SHIPPED_CHECKPOINT))["extra"])
    cfg = load_engine_config(None, [f"fusion.rule={rule}"])
    fm = load_fusion_model(cfg, meta.extractor_profile, meta.dims)
    opts: dict[str, Any] = {"threads": threads}
    if backend == "onnxruntime":
        opts["cache_dir"] = cache
    return FusionStage(fm, create_backend(backend, fm.model, fm.cache_key, **opts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fusion_rules", description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "torch"))
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as cache:
        stages = {r: stage_for(r, args.backend, cache, args.threads) for r in ("product", "learned")}
        dims = stages["product"].fm.dims
        window = {m: rng.standard_normal((LENGTHS[m], dims[m])).astype(np.float32) for m in MODALITIES}
        times: dict[str, dict[str, list[float]]] = {r: {c: [] for c in CONDITIONS} for r in stages}
        for cond, avail in CONDITIONS.items():
            a = np.asarray(avail, np.float32)
            for stage in stages.values():
                for _ in range(10):
                    stage(window, a)  # warm-up
            for _ in range(args.iters):
                for rule, stage in stages.items():
                    t0 = time.perf_counter_ns()
                    stage(window, a)
                    times[rule][cond].append((time.perf_counter_ns() - t0) / 1e6)
    per = {r: {c: percentiles(v) for c, v in t.items()} for r, t in times.items()}
    extra = {c: per["product"][c]["p50"] - per["learned"][c]["p50"] for c in CONDITIONS}
    report = {
        "benchmark": "fusion_rules",
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "backend": args.backend,
        "threads": args.threads,
        "lengths": LENGTHS,
        "iters": args.iters,
        "model": stages["product"].fm.identity,
        "ms": per,
        "p50_ratio_product_over_learned": {
            c: round(per["product"][c]["p50"] / per["learned"][c]["p50"], 3) for c in CONDITIONS
        },
        "p50_extra_ms": {c: round(v, 4) for c, v in extra.items()},
        "target": {"what": f"product rule costs at most {TARGET_MS} ms more per window",
                   "worst_extra_ms": round(max(extra.values()), 4),
                   "met": max(extra.values()) <= TARGET_MS},
    }
    emit(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
