"""Soak: one live stream for many minutes; does memory, threads or descriptors creep, does latency drift?

    python -m benchmarks.soak --minutes 30 [--media tests/data/streams/cremad_1001_x5.mp4] [--json OUT]

The media file is replayed in a loop at real-time pace through the real engine with the default config
(``--set key=value`` overrides). Every ``--interval`` seconds (60) one line goes to stderr and a sample
is kept: resident memory (MB), open file descriptors, OS threads, glibc's heap in use and free (MB, all
arenas), the number of Python objects, events so far, and the e2e p95 of the interval's events. At the
end the JSON report (stdout, and ``--json OUT``) has the samples and, over the samples after
``--warmup-min`` minutes (3), least-squares slopes per 10 minutes of each of them, plus
``seq_gapless`` over the whole run. Linux only (it reads ``/proc/self``).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import emit
from engine.core.memory import malloc_trim

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MEDIA = ROOT / "tests" / "data" / "streams" / "cremad_1001_x5.mp4"


def proc_status() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "Threads"):
            fields[k] = float(v.split()[0])
    return {
        "rss_mb": round(fields.get("VmRSS", 0.0) / 1024, 1),
        "threads": int(fields.get("Threads", 0)),
        "fds": len(os.listdir("/proc/self/fd")),
    }


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost",
    )]


def malloc_stats() -> dict[str, float]:
    """glibc's view of the C heap (all arenas): bytes handed out (in use, including mmap'd blocks) and
    bytes free but kept by the allocator. RSS that grows while "in use" stays flat is fragmentation or
    retention in the allocator, not a leak. Empty where glibc's mallinfo2 is absent."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = _MallInfo2
    m = fn()
    return {
        "malloc_in_use_mb": round((m.uordblks + m.hblkhd) / 2**20, 1),
        "malloc_free_mb": round(m.fordblks / 2**20, 1),
    }


def slope_per_10min(t_min: list[float], y: list[float]) -> float | None:
    if len(t_min) < 2 or max(t_min) - min(t_min) <= 0:
        return None
    return round(float(np.polyfit(np.asarray(t_min), np.asarray(y, float), 1)[0]) * 10.0, 3)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    from engine import Engine
    from engine.config import load_engine_config
    from engine.sources.file_replay import FileReplaySource

    cfg = load_engine_config(args.config, args.set)
    src = FileReplaySource(args.media, fast=False, loop=True, video=not args.audio_only)
    eng = Engine(cfg, [src])
    await eng.start()
    t0 = time.monotonic()
    samples: list[dict[str, Any]] = []
    seqs: list[int] = []
    window: list[float] = []
    stop_at = t0 + args.minutes * 60.0
    next_sample = t0 + args.interval

    def sample() -> None:
        if args.malloc_trim:
            malloc_trim()  # what run_live.py and engine.serve do once a minute (engine/core/memory.py)
        now = time.monotonic()
        s = {
            "t_min": round((now - t0) / 60.0, 2),
            **proc_status(),
            **malloc_stats(),
            "py_objects": len(gc.get_objects()),
            "events": len(seqs),
            "e2e_p95_ms": round(float(np.percentile(window, 95)), 1) if window else None,
        }
        samples.append(s)
        window.clear()
        print(json.dumps(s), file=sys.stderr, flush=True)

    sample()
    agen = eng.events().__aiter__()
    pending = asyncio.ensure_future(agen.__anext__())  # one outstanding read; a timeout never cancels it
    try:
        while time.monotonic() < stop_at:
            timeout = max(0.05, min(next_sample, stop_at) - time.monotonic())
            done, _ = await asyncio.wait({pending}, timeout=timeout)
            if done:
                try:
                    ev = pending.result()
                except StopAsyncIteration:
                    break
                seqs.append(ev.seq)
                window.append(ev.e2e_latency_ms)
                pending = asyncio.ensure_future(agen.__anext__())
            if time.monotonic() >= next_sample:
                sample()
                next_sample += args.interval
    finally:
        pending.cancel()
        await eng.close()
    sample()
    samples[-1]["closed"] = True  # after close(): shown, but not part of the slopes
    warm = [s for s in samples if s["t_min"] >= args.warmup_min and not s.get("closed")]
    tm = [s["t_min"] for s in warm]
    lat = [(s["t_min"], s["e2e_p95_ms"]) for s in warm if s["e2e_p95_ms"] is not None]
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "media": str(args.media),
        "malloc_trim": args.malloc_trim,
        "minutes": args.minutes,
        "events": len(seqs),
        "seq_gapless": seqs == list(range(len(seqs))),
        "warmup_min": args.warmup_min,
        "slopes": {
            "rss_mb_per_10min": slope_per_10min(tm, [s["rss_mb"] for s in warm]),
            "threads_per_10min": slope_per_10min(tm, [s["threads"] for s in warm]),
            "fds_per_10min": slope_per_10min(tm, [s["fds"] for s in warm]),
            "malloc_in_use_mb_per_10min": slope_per_10min(tm, [s.get("malloc_in_use_mb", 0) for s in warm]),
            "malloc_free_mb_per_10min": slope_per_10min(tm, [s.get("malloc_free_mb", 0) for s in warm]),
            "py_objects_per_10min": slope_per_10min(tm, [s["py_objects"] for s in warm]),
            "e2e_p95_ms_per_10min": slope_per_10min([a for a, _ in lat], [b for _, b in lat]),
        },
        "samples": samples,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, required=True)
    ap.add_argument("--media", type=Path, default=DEFAULT_MEDIA)
    ap.add_argument("--audio-only", action="store_true", help="replay only the file's audio")
    ap.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    ap.add_argument("--warmup-min", type=float, default=3.0, help="minutes left out of the slopes")
    ap.add_argument("--config", default="configs/engine/default.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--malloc-trim", action="store_true", help="call glibc malloc_trim(0) before each sample")
    args = ap.parse_args()
    if not args.media.is_file():
        ap.exit(2, f"soak: {args.media}: no such file\n")
    os.environ.setdefault("GLOG_minloglevel", "2")
    emit(asyncio.run(soak(args)), args.json)


if __name__ == "__main__":
    main()
