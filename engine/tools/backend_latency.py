"""The profiler's fusion-only mode: build each fusion backend on one model and time it on random windows."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.backends import create_backend
from engine.backends.base import FusionBackend, FusionInputs
from engine.tools.latency_stats import device_info, percentiles


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


# --------------------------------------------------------------------------------------------------
# one backend
# --------------------------------------------------------------------------------------------------
def staged_cuda_timing(backend: FusionBackend, inputs: FusionInputs, iters: int) -> dict[str, Any] | None:
    """H2D / compute / D2H in ms with CUDA events, for the torch backend on CUDA (trtexec's split)."""
    model = getattr(backend, "model", None)
    device = getattr(backend, "device", None)
    if model is None or device is None or torch.device(device).type != "cuda":
        return None
    host = _pinned_inputs(backend, inputs)
    h2d, comp, d2h = [], [], []
    for _ in range(iters):
        e = _staged_call(model, device, host)
        h2d.append(e[0].elapsed_time(e[1]))
        comp.append(e[1].elapsed_time(e[2]))
        d2h.append(e[2].elapsed_time(e[3]))
    return {"h2d_ms": percentiles(h2d), "compute_ms": percentiles(comp), "d2h_ms": percentiles(d2h)}


def _pinned_inputs(backend: FusionBackend, inputs: FusionInputs) -> dict[str, torch.Tensor]:
    """The inputs as pinned host tensors, features in the model's own dtype (fp16/bf16 on a half-precision
    backend), as infer() has them."""
    dtype = getattr(backend, "dtype", torch.float32)
    host = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.feed().items()}
    cast = ("text", "audio", "video", "avail")
    return {k: (t.to(dtype) if k in cast else t).pin_memory() for k, t in host.items()}


def _staged_call(model: torch.nn.Module, device: Any, host: dict[str, torch.Tensor]) -> list[Any]:
    """One copy-in / forward / copy-out, synchronised; the four CUDA events around its three stages."""
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
    return e


def _throughput(
    backend: FusionBackend,
    dims: dict[str, int],
    lengths: dict[str, int],
    iters: int,
    batches: tuple[int, ...],
) -> dict[str, dict[str, float]]:
    """Windows per second and median ms at each batch size."""
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
    return throughput


def _add_cuda_memory(res: dict[str, Any], backend: FusionBackend) -> None:
    """Peak GPU memory, and a TensorRT engine's own device memory where the backend has one."""
    res["gpu_peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
    eng = getattr(backend, "engine", None)
    if eng is not None and hasattr(eng, "device_memory_size_v2"):
        res["tensorrt_device_memory_mib"] = eng.device_memory_size_v2 / 2**20


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
    throughput = _throughput(backend, dims, lengths, iters, batches)
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
        _add_cuda_memory(res, backend)
    backend.close()
    return res


# --------------------------------------------------------------------------------------------------
# every backend of --backend
# --------------------------------------------------------------------------------------------------
def _load_model(args: argparse.Namespace) -> tuple[torch.nn.Module, str]:
    """The --checkpoint's model and identity, or a seeded random-init model of --config."""
    from models.cmarr import CMARR, CMARRConfig
    from models.config_io import load_config

    if args.checkpoint:
        from models.checkpoint import load_checkpoint

        ck = load_checkpoint(args.checkpoint)
        return ck.model, ck.identity
    torch.manual_seed(0)
    model = CMARR(load_config(CMARRConfig, args.config)).eval()
    return model, f"untrained-{Path(args.config).stem}"


def _window_lengths(c: Any, args: argparse.Namespace) -> dict[str, int]:
    """Frames per modality in a window; the audio default depends on the audio features (log-mel or not)."""
    return {
        "text": args.text_len,
        "audio": args.audio_len or (300 if c.audio_dim == 80 else 150),
        "video": args.video_len,
    }


def _per_backend_options(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """--options parsed; exits with a message when it is not an object keyed by profiled backends."""
    per_backend = json.loads(args.options) if args.options else {}
    stray = sorted(set(per_backend) - set(names)) if isinstance(per_backend, dict) else ["(not an object)"]
    if stray:
        raise SystemExit(
            f"engine.profile: --options must map each profiled backend to its options, e.g. "
            f'\'{{"tensorrt": {{"precision": "fp16"}}, "torch": {{"dtype": "fp16"}}}}\'; got keys {stray}'
        )
    return per_backend


def _backend_options(name: str, per_backend: dict[str, Any], threads: int) -> dict[str, Any]:
    """One backend's options, with --threads as the default thread count of onnxruntime and torch."""
    opts = dict(per_backend.get(name, {}))
    if name == "onnxruntime":
        opts.setdefault("threads", threads)
    if name == "torch" and threads:
        opts.setdefault("threads", threads)
    return opts


def _latency_ratios(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """p50/p95/p99 of each backend that ran over those of the first one that ran."""
    ok = [r for r in results if "error" not in r]
    ratios = {}
    if ok:
        base = ok[0]
        for r in ok[1:]:
            ratios[f"{r['backend']}_vs_{base['backend']}"] = {
                q: r["latency_ms_batch1"][q] / base["latency_ms_batch1"][q] for q in ("p50", "p95", "p99")
            }
    return ratios


def fusion_profile(args: argparse.Namespace) -> dict[str, Any]:
    model, model_id = _load_model(args)
    c = model.config
    dims = {"text": c.text_dim, "audio": c.audio_dim, "video": c.video_dim}
    lengths = _window_lengths(c, args)
    results = []
    names = args.backend.split(",")
    per_backend = _per_backend_options(args, names)
    for name in names:
        opts = _backend_options(name, per_backend, args.threads)
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
    return {
        "mode": "fusion",
        "model_id": model_id,
        "parameters": sum(p.numel() for p in model.parameters()),
        "lengths": lengths,
        "device_info": device_info(),
        "results": results,
        "latency_ratios": _latency_ratios(results),
    }
