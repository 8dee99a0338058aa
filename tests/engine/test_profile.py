"""The profiler's whole-engine mode aggregates the per-stage latencies that real replay events carry."""

from __future__ import annotations

import time
from typing import Any

from engine.sources import FileReplaySource
from engine.tools.engine_latency import summarise_events
from tests.engine.conftest import config, run_engine
from tests.engine.media import ANG


def test_engine_mode_summary_from_a_real_replay(extractors: Any, fusion: Any, backend: Any) -> None:
    t0 = time.perf_counter()
    events, _ = run_engine(config(), [FileReplaySource(ANG, fast=True)], extractors, fusion, backend)
    rep = summarise_events(events, time.perf_counter() - t0)
    assert rep["events"] == len(events) == 3
    assert 2.0 < rep["media_s"] < 2.5  # the ANG clip lasts 2.27 s
    assert rep["real_time_factor"] == rep["wall_s"] / rep["media_s"]
    assert {"fusion", "face", "vad"} <= set(rep["stages_ms"])
    fusion_ms = rep["stages_ms"]["fusion"]
    assert fusion_ms["n"] == 3 and 0 < fusion_ms["p50"] <= fusion_ms["p99"]
    assert rep["e2e_latency_ms"]["n"] == 3 and rep["e2e_latency_ms"]["min"] > 0


def test_the_command_profiles_the_whole_engine(tmp_path) -> None:
    """``python -m engine.profile --video``: models loaded, the clip replayed, the report written."""
    import json

    from engine.tools.latency import main

    out = tmp_path / "profile.json"
    assert main(["--video", str(ANG), "--backend", "onnxruntime", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["mode"] == "engine" and rep["events"] == 3 and rep["load_s"] > 0
    assert {"fusion", "face", "vad"} <= set(rep["stages_ms"])
