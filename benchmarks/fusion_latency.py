"""Fusion latency: torch eager vs onnxruntime (CPU) in one run, batch 1, ~50-step windows, every mask.

    python benchmarks/fusion_latency.py [--config configs/model/cmarr.yaml] [--iters 200] [--threads 2]

Prints JSON: per backend and availability condition p50/p95/p99 in ms, and the torch/onnxruntime ratio of
p50 and p99 per condition. Random-init weights (latency does not depend on the values).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.tools.latency_stats import percentiles  # noqa: E402
from models.cmarr import CMARR, CMARRConfig  # noqa: E402
from models.config_io import load_config  # noqa: E402
from models.export import INPUT_NAMES, example_inputs, export_onnx  # noqa: E402
from models.modalities import CONDITIONS  # noqa: E402


def time_fn(fn, iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/model/cmarr.yaml")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50, help="sequence length of each modality (~window)")
    args = ap.parse_args()

    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(CMARRConfig, args.config)
    model = CMARR(cfg).eval()
    dims = cfg.input_dims
    with tempfile.TemporaryDirectory() as td:
        t0 = time.perf_counter()
        path = export_onnx(model, Path(td) / "fusion.onnx")
        export_s = time.perf_counter() - t0
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        results: dict[str, dict] = {"torch_eager": {}, "onnxruntime": {}}
        ratios = {}
        lens = {m: args.steps for m in dims}
        for cond, mask in CONDITIONS.items():
            inp = example_inputs(dims, 1, lens, mask, ragged=False)
            feed = {k: v.numpy() for k, v in zip(INPUT_NAMES, inp, strict=True)}

            def run_torch(inp=inp):
                with torch.inference_mode():
                    model(*inp)

            def run_ort(feed=feed):
                sess.run(["logits"], feed)

            # Interleave the two backends per condition so machine noise hits both alike.
            t = percentiles(time_fn(run_torch, args.iters, args.warmup))
            o = percentiles(time_fn(run_ort, args.iters, args.warmup))
            results["torch_eager"][cond] = t
            results["onnxruntime"][cond] = o
            ratios[cond] = {
                "p50_torch_over_ort": t["p50"] / o["p50"], "p99_torch_over_ort": t["p99"] / o["p99"]
            }
    report = {
        "benchmark": "fusion_latency",
        "config": args.config,
        "parameters": model.num_parameters(),
        "batch": 1,
        "steps_per_modality": args.steps,
        "threads": args.threads,
        "export_seconds": export_s,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__, "onnxruntime": ort.__version__},
        "latency_ms": results,
        "ratios": ratios,
        "median_ratio_p50": float(np.median([r["p50_torch_over_ort"] for r in ratios.values()])),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
