"""The profiler's whole-engine mode: a --fast replay of one file and its per-stage latencies."""

from __future__ import annotations

import argparse
import time
from typing import Any

from engine.tools.latency_stats import device_info, percentiles


def engine_profile(args: argparse.Namespace) -> dict[str, Any]:
    """Replay --video with --fast and aggregate the per-stage latencies the events carry."""
    import asyncio

    from engine import Engine, load_extractors
    from engine.config import load_engine_config
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
