"""Latency profiler for the fusion backends and for the whole engine.

Fusion-only (compares backends in one run, reports ratios to the first backend):

    python -m engine.profile --config configs/model/cmarr_offline.yaml --backend onnxruntime,torch

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
from pathlib import Path
from typing import Any

from engine.tools.backend_latency import fusion_profile
from engine.tools.engine_latency import engine_profile


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console

    con = Console(stderr=True)
    con.print(_fusion_table(report) if report["mode"] == "fusion" else _engine_table(report))


def _fusion_table(report: dict[str, Any]) -> Any:
    """Per backend: build time, first call, batch-1 percentiles and throughput at batch 1 and 32."""
    from rich.table import Table

    where = report["device_info"].get("gpu") or report["device_info"]["cpu"]
    t = Table(title=f"fusion latency (batch 1) — {where}")
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
    return t


def _engine_table(report: dict[str, Any]) -> Any:
    """Per stage of an engine replay: p50/p95/p99 in ms."""
    from rich.table import Table

    t = Table(title=f"engine replay: {report['events']} events, RTF {report['real_time_factor']}")
    for col in ("stage", "p50 ms", "p95 ms", "p99 ms"):
        t.add_column(col)
    for k, v in report["stages_ms"].items():
        t.add_row(k, f"{v['p50']:.1f}", f"{v['p95']:.1f}", f"{v['p99']:.1f}")
    return t


def _parser() -> argparse.ArgumentParser:
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
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    report = engine_profile(args) if args.video else fusion_profile(args)
    print_table(report)
    text = json.dumps(report, indent=1, default=str)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    print(text)
    return 0
