"""The MOSI benchmark's short version on the real bundled features, and the GPU throughput benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import mosi, train_throughput
from training.data.mosi import load_mosi

from .conftest import MOSI


def test_logreg_baseline_matches_reference_points() -> None:
    # data/README.md: logistic regression on the concatenated features reaches 75.7% test accuracy and
    # text alone 75.3%; ours picks its L2 strength on validation, so allow a point either way.
    lr = mosi.logreg_baselines(load_mosi(MOSI), grid=(1e-2,))
    assert abs(lr["tav"]["accuracy"] - 0.757) < 0.015
    assert abs(lr["t"]["accuracy"] - 0.753) < 0.015
    assert lr["a"]["accuracy"] < 0.62 and lr["v"]["accuracy"] < 0.62  # the weak modalities stay weak


def test_quick_mosi_benchmark_beats_chance_and_majority(tmp_path: Path) -> None:
    out = tmp_path / "mosi.json"
    assert (
        mosi.main(["--data", str(MOSI), "--quick", "--json", str(out), "--markdown", str(tmp_path / "m.md")])
        == 0
    )
    res = json.loads(out.read_text())
    majority = res["majority_accuracy"]
    assert majority == pytest.approx(467 / 752)
    full = res["cmarr_missing"]["conditions"]["tav"]
    assert full["accuracy"]["mean"] > majority + 0.05, full  # beats the majority class on test
    assert full["uar"]["mean"] > 0.6, full  # and chance (UAR 0.5) clearly
    assert res["cmarr_full_only"]["conditions"]["tav"]["accuracy"]["mean"] > majority
    assert set(res["logreg"]) == {"t", "a", "v", "tv", "av", "ta", "tav"}
    assert len(res["targets"]) == 8 and all(isinstance(t["met"], bool) for t in res["targets"])
    md = (tmp_path / "m.md").read_text()
    assert "| {t,a,v} |" in md and "mean of 6 missing" in md


def test_throughput_skips_cleanly_without_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the real measurement runs in test_throughput_on_gpu")
    assert train_throughput.main(["--json", str(tmp_path / "t.json")]) == 0
    res = json.loads((tmp_path / "t.json").read_text())
    assert res["skipped"] is True and "CUDA" in res["reason"]


def test_synthetic_batch_shapes() -> None:
    b = train_throughput.synthetic_batch(4, torch.device("cpu"))
    assert (
        b["audio"].shape == (4, 225, 768)
        and b["video"].shape == (4, 135, 342)
        and b["text"].shape == (4, 32, 768)
    )
    lengths = b["audio_mask"].sum(dim=1).numpy()
    assert np.all(lengths >= 112) and np.all(lengths <= 225)


@pytest.mark.gpu
def test_throughput_on_gpu(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    assert train_throughput.main(["--json", str(tmp_path / "t.json"), "--steps", "5", "--warmup", "2"]) == 0
    res = json.loads((tmp_path / "t.json").read_text())
    assert res["skipped"] is False and res["paper_batch16_fp32"]["samples_per_second"] > 0
