"""The fusion graph in fp32, fp16 and int8: how far each reduced precision moves the readings, on
windows of speakers that the int8 calibration never saw, and what each costs per window.

    python -m benchmarks.precision_graphs --calibrate data/cremad \\
        --evaluate tests/data/streams/monologue_en_us.flac --json out/precision_graphs.json [--tensorrt]

The engine (default config, or ``--config``/``--set``) replays the ``--calibrate`` files and records
their fusion windows (each also under every subset of its modalities, as ``python -m engine.calibrate``
does); the int8 graph is calibrated on them. The ``--evaluate`` files are recorded the same way and
every precision is scored against fp32 on them, one window per call as the engine runs: top-1
agreement, max and mean |probability difference|, latency p50/p95. onnxruntime on the CPU runs every
graph (it is the reference, and it shows the graphs are sound; fp16 and int8 are not faster there);
``--tensorrt`` (a CUDA GPU with TensorRT) also builds and times the TensorRT engine of each precision.
Latency ratios are to fp32 on the same backend, measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import emit
from engine.backends import create_backend
from engine.backends.base import FusionInputs, softmax
from engine.backends.graphs import PRECISIONS, precision_graph, save_calibration, with_dropped_modalities
from engine.config import build_engine_config
from engine.core.shared import SharedModels
from engine.tools.int8_windows import media_files, record_windows
from engine.tools.latency_stats import device_info


def record(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cfg = build_engine_config(args.config, args.set)
    models = SharedModels.load(cfg)
    try:
        calib = record_windows(models, cfg, media_files(args.calibrate), args.max_windows)
        held_out = record_windows(models, cfg, media_files(args.evaluate), args.max_windows)
        onnx_path = models.backend.onnx_path
    finally:
        models.close()
    model_id, dims = models.fusion.cache_key, models.fusion.dims
    calib_samples = with_dropped_modalities(calib.samples)
    eval_samples = with_dropped_modalities(held_out.samples)
    npz = save_calibration(calib_samples, work / "calibration.npz", model_id, dims)
    return {
        "onnx": onnx_path,
        "model_id": model_id,
        "dims": dims,
        "calibration": npz,
        "eval": [FusionInputs.from_samples([s], dims) for s in eval_samples],
        "counts": {
            "calibration_windows": len(calib.samples),
            "calibration_samples": len(calib_samples),
            "evaluation_windows": len(held_out.samples),
            "evaluation_samples": len(eval_samples),
        },
        "failed": calib.failed + held_out.failed,
    }


def score(
    backend: Any, windows: list[FusionInputs], ref: np.ndarray | None
) -> tuple[dict[str, Any], np.ndarray]:
    backend.infer(windows[0])  # first call (CUDA graph capture, allocations) is not timed
    times, probs = [], []
    for w in windows:
        t0 = time.perf_counter()
        res = backend.infer(w)
        times.append((time.perf_counter() - t0) * 1e3)
        probs.append(softmax(np.asarray(res.logits[0], np.float64)))
    p = np.asarray(probs)
    row: dict[str, Any] = {
        "latency_ms": {
            "p50": round(float(np.percentile(times, 50)), 3),
            "p95": round(float(np.percentile(times, 95)), 3),
            "n": len(times),
        }
    }
    if ref is not None:
        d = np.abs(p - ref).max(axis=1)
        row.update(
            top1_agreement=round(float((p.argmax(1) == ref.argmax(1)).mean()), 4),
            max_abs_dprob=round(float(d.max()), 4),
            mean_abs_dprob=round(float(d.mean()), 5),
        )
    return row, p


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rec = record(args, work)
    backends = ["onnxruntime"] + (["tensorrt"] if args.tensorrt else [])
    results, ref = [], None
    for name in backends:
        for precision in PRECISIONS:
            t0 = time.perf_counter()
            if name == "onnxruntime":
                graph = precision_graph(precision, rec["onnx"], work, rec["calibration"], rec["model_id"])
                backend = create_backend(name, None, rec["model_id"], onnx_path=graph, threads=args.threads)
            else:
                backend = create_backend(
                    name,
                    None,
                    rec["model_id"],
                    device="cuda",
                    onnx_path=rec["onnx"],
                    precision=precision,
                    cache_dir=str(work),
                    calibration_npz=str(rec["calibration"]) if precision == "int8" else None,
                )
            build_s = time.perf_counter() - t0
            row, probs = score(backend, rec["eval"], ref)
            backend.close()
            if ref is None:  # onnxruntime fp32: the reference
                ref = probs
                row.update(top1_agreement=1.0, max_abs_dprob=0.0, mean_abs_dprob=0.0)
            results.append({"backend": name, "precision": precision, "build_s": round(build_s, 2), **row})
    ratios = {}
    for name in backends:
        base = next(r for r in results if r["backend"] == name and r["precision"] == "fp32")
        for r in results:
            if r["backend"] == name and r["precision"] != "fp32":
                ratios[f"{name}_{r['precision']}_vs_fp32_p50"] = round(
                    r["latency_ms"]["p50"] / base["latency_ms"]["p50"], 3
                )
    return {
        "benchmark": "precision_graphs",
        "device_info": device_info(),
        "model_id": rec["model_id"],
        "calibrate": args.calibrate,
        "evaluate": args.evaluate,
        **rec["counts"],
        "failed": rec["failed"],
        "reference": "onnxruntime fp32 on the CPU",
        "results": results,
        "latency_ratios": ratios,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.precision_graphs", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--calibrate", nargs="+", required=True, metavar="CLIP_OR_FOLDER")
    ap.add_argument(
        "--evaluate",
        nargs="+",
        required=True,
        metavar="CLIP_OR_FOLDER",
        help="other speakers than --calibrate",
    )
    ap.add_argument("--config", metavar="YAML")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--tensorrt", action="store_true", help="also time TensorRT engines (CUDA GPU)")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument("--max-windows", type=int, default=2000)
    ap.add_argument("--work", default="out/precision_graphs", help="calibration data, graphs and engines")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    emit(run(args), args.json)


if __name__ == "__main__":
    main()
