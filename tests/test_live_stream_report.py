"""benchmarks/live_stream on a real clip: the streaming WER next to the same model's offline WER, the
commit lag and the decoder's cost, and every target with met or missed."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.live_stream import main

CLIP = Path(__file__).resolve().parents[1] / "data" / "cremad" / "1001_DFA_ANG_XX.flv"


def test_report_has_offline_wer_commit_lag_and_targets(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    ref = tmp_path / "ref.txt"
    ref.write_text("Don't forget a jacket.\n")
    out = tmp_path / "report.json"
    assert main(["--media", str(CLIP), "--reference", str(ref), "--fast", "--json", str(out)]) == 0
    run = json.loads(capsys.readouterr().out)["runs"][0]
    assert run["offline_wer"] is not None and 0 <= run["offline_wer"] <= 0.5  # the model reads it
    assert run["wer_vs_offline"] is None or run["wer_vs_offline"] >= 0
    lag = run["commit_lag_s"]
    assert lag is not None and 0 <= lag["p50"] <= lag["p95"] <= 5.0  # a 2.5 s clip
    assert run["asr_passes"] >= 1 and run["decoder_ms_per_audio_s"] > 0
    targets = {t["what"]: t for t in run["targets"]}
    assert "RTF" in targets and "e2e p95 (ms)" not in targets  # --fast: no live latency targets
    assert targets["commit lag p50 (s)"]["met"] == (lag["p50"] <= 1.5)
    full = json.loads(out.read_text())["runs"][0]
    assert full["events"] and all("new_words" in e for e in full["events"])
