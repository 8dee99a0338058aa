"""How fusion latency and throughput scale with N concurrent streams in one process.

    python benchmarks/multistream.py [--config configs/model/cmarr_offline.yaml] [--backend onnxruntime]
                                     [--streams 1 4 16 64] [--windows 20] [--device cpu]

Each stream is a thread that submits its windows back to back (it waits for its result before sending
the next window, as an engine would at its hop, but with no idle time: the stress case), exactly as N
``Engine`` instances sharing one ``BatchingBackend`` call it from their worker threads. For each N it
runs the same load twice in one process: batched (windows of different streams share one backend call)
and unbatched (max_batch=1). It prints JSON with p50/p95 per-window latency, windows per second, the
mean batch size, and the batched/unbatched ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.backends import BatchingBackend, FusionInputs, create_backend  # noqa: E402
from engine.tools.latency_stats import device_info  # noqa: E402
from models.cmarr import CMARR, CMARRConfig  # noqa: E402
from models.config_io import load_config  # noqa: E402


def make_window(
    rng: np.random.Generator, dims: dict[str, int], lengths: dict[str, int]
) -> dict[str, np.ndarray]:
    w = {m: rng.standard_normal((lengths[m], dims[m])).astype(np.float32) for m in dims}
    w["avail"] = np.array([1, 1, 1], dtype=np.float32)
    return w


def run_load(backend, dims, lengths, streams: int, windows: int, max_batch: int, max_wait_ms: float):  # noqa: ANN001
    shared = BatchingBackend(backend, max_batch=max_batch, max_wait_ms=max_wait_ms)
    lat: list[float] = []

    def stream(i: int) -> None:
        rng = np.random.default_rng(i)
        for _ in range(windows):
            x = FusionInputs.from_samples([make_window(rng, dims, lengths)], dims)
            t0 = time.perf_counter()
            shared.infer(x)
            lat.append((time.perf_counter() - t0) * 1000.0)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=streams) as pool:
        list(pool.map(stream, range(streams)))
    wall = time.perf_counter() - t0
    stats = shared.stats
    shared.stop()  # the wrapped backend is reused by the next load
    a = np.asarray(lat)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "windows_per_s": streams * windows / wall, "mean_batch": stats.mean_batch,
            "max_batch_seen": max(stats.sizes) if stats.sizes else 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/model/cmarr_offline.yaml")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--windows", type=int, default=20, help="windows per stream")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=float, default=2.0)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = CMARR(load_config(CMARRConfig, args.config)).eval()
    c = model.config
    dims = {"text": c.text_dim, "audio": c.audio_dim, "video": c.video_dim}
    lengths = {"text": 32, "audio": 300 if c.audio_dim == 80 else 150, "video": 90}
    backend = create_backend(args.backend, model, f"untrained-{Path(args.config).stem}", device=args.device,
                             threads=args.threads)
    rows = []
    for n in args.streams:
        batched = run_load(backend, dims, lengths, n, args.windows, args.max_batch, args.max_wait_ms)
        single = run_load(backend, dims, lengths, n, args.windows, 1, 0.0)
        throughput_ratio = batched["windows_per_s"] / single["windows_per_s"]
        rows.append({"streams": n, "batched": batched, "unbatched": single,
                     "throughput_ratio_batched_over_unbatched": throughput_ratio,
                     "p95_ratio_batched_over_unbatched": batched["p95_ms"] / single["p95_ms"]})
    print(json.dumps({"benchmark": "multistream", "backend": args.backend, "config": args.config,
                      "lengths": lengths, "windows_per_stream": args.windows, "device_info": device_info(),
                      "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
