"""Latency profiler for the fusion backends and for the whole engine.

Fusion-only (compares backends in one run, reports ratios to the first backend):

    python -m engine.profile --config configs/model/cmarr_offline.yaml --backend onnxruntime,torch --json out.json

Whole engine (per-stage breakdown read from the events of a --fast replay):

    python -m engine.profile --video data/cremad/1001_DFA_ANG_XX.flv --backend onnxruntime --json out.json

Fusion-only mode reports, per backend: build time (export/engine build, cached builds are fast), the
first call, the warmup calls (counted separately from the measured ones), p50/p90/p95/p99 at batch 1,
throughput at batch 1/8/32, and on CUDA the H2D / compute / D2H split measured with CUDA events as
trtexec defines them (host-to-device copy of the inputs, GPU compute, device-to-host copy of the
outputs) plus peak GPU memory. On CPU backends there is no copy: H2D/D2H are reported as null.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.backends import create_backend
from engine.backends.base import FusionBackend, FusionInputs


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    return {
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, 90)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "n": int(a.size),
    }


def device_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    try:
        import tensorrt as trt  # type: ignore[import-not-found]

        info["tensorrt"] = trt.__version__
    except ImportError:
        info["tensorrt"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = p.name
        info["gpu_memory_gib"] = round(p.total_memory / 2**30, 1)
        info["compute_capability"] = f"{p.major}.{p.minor}"
        info["cuda_runtime"] = torch.version.cuda
        info["driver"] = _nvidia_driver()
    else:
        info["gpu"] = None
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def window_inputs(
    dims: dict[str, int],
    batch: int,
    lengths: dict[str, int],
    seed: int = 0,
    avail: tuple[int, int, int] = (1, 1, 1),
) -> FusionInputs:
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(batch):
        s = {m: rng.standard_normal((lengths[m], dims[m])).astype(np.float32) for m in dims}
        s["avail"] = np.asarray(avail, dtype=np.float32)
        samples.append(s)
    return FusionInputs.from_samples(samples, dims)


def _timed(fn, n: int) -> list[float]:  # noqa: ANN001
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def staged_cuda_timing(backend: FusionBackend, inputs: FusionInputs, iters: int) -> dict[str, Any] | None:
    """H2D / compute / D2H in ms with CUDA events, for the torch backend on CUDA (trtexec's split)."""
    model = getattr(backend, "model", None)
    device = getattr(backend, "device", None)
    if model is None or device is None or torch.device(device).type != "cuda":
        return None
    # Feature inputs in the model's own dtype (fp16/bf16 on a half-precision backend), as infer() has them.
    dtype = getattr(backend, "dtype", torch.float32)
    host = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.feed().items()}
    cast = ("text", "audio", "video", "avail")
    host = {k: (t.to(dtype) if k in cast else t).pin_memory() for k, t in host.items()}
    h2d, comp, d2h = [], [], []
    for _ in range(iters):
        e = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        e[0].record()
        dev = {k: v.to(device, non_blocking=True) for k, v in host.items()}
        e[1].record()
        with torch.inference_mode():
            out = model(
                dev["text"],
                dev["text_mask"],
                dev["audio"],
                dev["audio_mask"],
                dev["video"],
                dev["video_mask"],
                dev["avail"],
            )
        e[2].record()
        out.logits.float().to("cpu", non_blocking=True)
        e[3].record()
        torch.cuda.synchronize()
        h2d.append(e[0].elapsed_time(e[1]))
        comp.append(e[1].elapsed_time(e[2]))
        d2h.append(e[2].elapsed_time(e[3]))
    return {"h2d_ms": percentiles(h2d), "compute_ms": percentiles(comp), "d2h_ms": percentiles(d2h)}


def profile_backend(
    name: str,
    model: torch.nn.Module,
    model_id: str,
    dims: dict[str, int],
    lengths: dict[str, int],
    device: str,
    iters: int,
    warmup: int,
    batches: tuple[int, ...],
    options: dict[str, Any],
) -> dict[str, Any]:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    backend = create_backend(name, model, model_id, device=device, **options)
    build_s = time.perf_counter() - t0
    x1 = window_inputs(dims, 1, lengths)
    first = _timed(lambda: backend.infer(x1), 1)[0]
    warm = _timed(lambda: backend.infer(x1), warmup)
    lat = _timed(lambda: backend.infer(x1), iters)
    throughput = {}
    for b in batches:
        xb = window_inputs(dims, b, lengths, seed=b)
        backend.infer(xb)  # shape warmup (TensorRT/CUDA graphs capture per shape)
        n = max(5, iters // max(1, b // 4))
        ms = _timed(lambda xb=xb: backend.infer(xb), n)
        throughput[str(b)] = {
            "windows_per_s": b * 1000.0 / float(np.median(ms)),
            "p50_ms": float(np.median(ms)),
        }
    res: dict[str, Any] = {
        "backend": name,
        "describe": backend.describe(),
        "device": device,
        "build_s": build_s,
        "first_call_ms": first,
        "warmup_ms": percentiles(warm) if warm else None,
        "latency_ms_batch1": percentiles(lat),
        "throughput": throughput,
        "staged": staged_cuda_timing(backend, x1, min(iters, 200)) if name == "torch" else None,
        "h2d_d2h": "not applicable: host memory" if not device.startswith("cuda") else "see staged",
    }
    if device.startswith("cuda"):
        res["gpu_peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
        eng = getattr(backend, "engine", None)
        if eng is not None and hasattr(eng, "device_memory_size_v2"):
            res["tensorrt_device_memory_mib"] = eng.device_memory_size_v2 / 2**20
    backend.close()
    return res


def fusion_profile(args: argparse.Namespace) -> dict[str, Any]:
    from models.cmarr import CMARR, CMARRConfig
    from models.config_io import load_config

    if args.checkpoint:
        from models.checkpoint import load_checkpoint

        ck = load_checkpoint(args.checkpoint)
        model, model_id = ck.model, ck.identity
    else:
        torch.manual_seed(0)
        model = CMARR(load_config(CMARRConfig, args.config)).eval()
        model_id = f"untrained-{Path(args.config).stem}"
    c = model.config
    dims = {"text": c.text_dim, "audio": c.audio_dim, "video": c.video_dim}
    lengths = {
        "text": args.text_len,
        "audio": args.audio_len or (300 if c.audio_dim == 80 else 150),
        "video": args.video_len,
    }
    results = []
    per_backend = json.loads(args.options) if args.options else {}
    names = args.backend.split(",")
    stray = sorted(set(per_backend) - set(names)) if isinstance(per_backend, dict) else ["(not an object)"]
    if stray:
        raise SystemExit(
            f"engine.profile: --options must map each profiled backend to its options, e.g. "
            f'\'{{"tensorrt": {{"precision": "fp16"}}, "torch": {{"dtype": "fp16"}}}}\'; got keys {stray}'
        )
    for name in names:
        opts = dict(per_backend.get(name, {}))
        if name == "onnxruntime":
            opts.setdefault("threads", args.threads)
        if name == "torch" and args.threads:
            opts.setdefault("threads", args.threads)
        try:
            results.append(
                profile_backend(
                    name,
                    model,
                    model_id,
                    dims,
                    lengths,
                    args.device,
                    args.iters,
                    args.warmup,
                    tuple(args.batches),
                    opts,
                )
            )
        except (RuntimeError, ValueError) as e:  # e.g. tensorrt absent: report, keep profiling the rest
            results.append({"backend": name, "error": str(e)})
    ok = [r for r in results if "error" not in r]
    ratios = {}
    if ok:
        base = ok[0]
        for r in ok[1:]:
            ratios[f"{r['backend']}_vs_{base['backend']}"] = {
                q: r["latency_ms_batch1"][q] / base["latency_ms_batch1"][q] for q in ("p50", "p95", "p99")
            }
    return {
        "mode": "fusion",
        "model_id": model_id,
        "parameters": sum(p.numel() for p in model.parameters()),
        "lengths": lengths,
        "device_info": device_info(),
        "results": results,
        "latency_ratios": ratios,
    }


def engine_profile(args: argparse.Namespace) -> dict[str, Any]:
    """Replay --video with --fast and aggregate the per-stage latencies the events carry."""
    import asyncio

    from engine.config import load_engine_config
    from engine.engine import Engine, load_extractors
    from engine.stages.fusion import build_backend, load_fusion_model

    overrides = [f"backend.name={args.backend.split(',')[0]}", f"backend.device={args.device}"]
    cfg = load_engine_config(args.engine_config, overrides + list(args.set or []))
    t_load = time.perf_counter()
    ex = load_extractors(cfg)  # loaded before the clock starts: the replay is what is timed
    fm = load_fusion_model(cfg, ex.describe(), ex.dims)
    backend = build_backend(fm, cfg)
    load_s = time.perf_counter() - t_load
    events: list[Any] = []

    async def run() -> None:
        async with Engine(cfg, video=args.video, fast=True, extractors=ex, fusion=fm, backend=backend) as eng:
            async for ev in eng.events():
                events.append(ev)

    try:
        t0 = time.perf_counter()
        asyncio.run(run())
        report = summarise_events(events, time.perf_counter() - t0)
    finally:
        backend.close()
        ex.close()
    return {
        "mode": "engine",
        "video": str(args.video),
        "load_s": load_s,
        **report,
        "device_info": device_info(),
    }


def summarise_events(events: list[Any], wall_s: float) -> dict[str, Any]:
    """Per-stage latency percentiles, end-to-end latency and real-time factor from a replay's events."""
    stages: dict[str, list[float]] = {}
    e2e = []
    for ev in events:
        for k, v in (ev.latency_ms or {}).items():
            if v is not None:
                stages.setdefault(k, []).append(float(v))
        if getattr(ev, "e2e_latency_ms", None) is not None:
            e2e.append(float(ev.e2e_latency_ms))
    media = max((ev.t_end for ev in events), default=0.0)
    return {
        "events": len(events),
        "wall_s": wall_s,
        "media_s": media,
        "real_time_factor": wall_s / media if media else None,
        "stages_ms": {k: percentiles(v) for k, v in stages.items()},
        "e2e_latency_ms": percentiles(e2e) if e2e else None,
    }


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(stderr=True)
    if report["mode"] == "fusion":
        t = Table(
            title=f"fusion latency (batch 1) — {report['device_info'].get('gpu') or report['device_info']['cpu']}"
        )
        for col in ("backend", "build s", "first ms", "p50", "p90", "p95", "p99", "win/s @1", "win/s @32"):
            t.add_column(col)
        for r in report["results"]:
            if "error" in r:
                t.add_row(r["backend"], "-", "-", "-", "-", "-", "-", "-", r["error"][:40])
                continue
            lat, thr = r["latency_ms_batch1"], r["throughput"]
            t.add_row(
                r["backend"],
                f"{r['build_s']:.2f}",
                f"{r['first_call_ms']:.2f}",
                *(f"{lat[q]:.3f}" for q in ("p50", "p90", "p95", "p99")),
                f"{thr.get('1', {}).get('windows_per_s', 0):.0f}",
                f"{thr.get('32', {}).get('windows_per_s', 0):.0f}",
            )
        con.print(t)
    else:
        t = Table(title=f"engine replay: {report['events']} events, RTF {report['real_time_factor']}")
        for col in ("stage", "p50 ms", "p95 ms", "p99 ms"):
            t.add_column(col)
        for k, v in report["stages_ms"].items():
            t.add_row(k, f"{v['p50']:.1f}", f"{v['p95']:.1f}", f"{v['p99']:.1f}")
        con.print(t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/model/cmarr_offline.yaml", help="model YAML (fusion mode)")
    ap.add_argument("--checkpoint", help="a trained checkpoint instead of a random-init model")
    ap.add_argument("--video", help="replay this file through the whole engine (engine mode)")
    ap.add_argument("--engine-config", default=None, help="engine YAML for engine mode")
    ap.add_argument("--set", action="append", help="engine config override key=value (engine mode)")
    ap.add_argument("--backend", default="onnxruntime,torch", help="comma list; the first is the ratio base")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument(
        "--options",
        help="JSON of options per backend, e.g. "
        '\'{"tensorrt": {"precision": "fp16"}, "torch": {"dtype": "fp16"}}\'; '
        "a backend refuses options it does not take",
    )
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--text-len", type=int, default=32)
    ap.add_argument("--audio-len", type=int, default=0, help="0: 300 for log-mel (100 Hz), 150 for wav2vec2")
    ap.add_argument("--video-len", type=int, default=90)
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args(argv)
    report = engine_profile(args) if args.video else fusion_profile(args)
    print_table(report)
    text = json.dumps(report, indent=1, default=str)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    print(text)
    return 0
