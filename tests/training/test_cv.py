"""Leave-one-group-out cross-validation over a real-format feature store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.evaluation.cv import _ensure_store, run_cv

from .conftest import REPO, TINY_MODEL


def test_cv_runs_every_fold_and_aggregates(store: Path, tmp_path: Path) -> None:
    overrides = [
        *TINY_MODEL,
        "data.val_fraction=0.25",
        "data.num_workers=0",
        "optim.lr=3.0e-3",
        "optim.batch_size=8",
        "optim.epochs=1",
        "early_stopping_patience=0",
    ]
    res = run_cv(REPO / "configs" / "train" / "cmarr_iemocap.yaml", store, tmp_path / "cv", overrides)
    assert res["folds"] == ["Session1", "Session2", "Session3"]
    for g in res["folds"]:
        assert (tmp_path / "cv" / f"fold_{g}" / "best.safetensors").is_file()
        assert res["per_fold"][g]["conditions"]["tav"]["n"] == 24  # each fold tests its own session only
    agg = res["aggregate"]
    wars = [res["per_fold"][g]["conditions"]["ta"]["war"] for g in res["folds"]]
    assert agg["conditions"]["ta"]["war"]["mean"] == pytest.approx(sum(wars) / 3)
    assert agg["conditions"]["ta"]["war"]["n_folds"] == 3
    assert "pooled" in agg["pooled_missing"]["definition"] and "war" in agg["mean_missing"]
    saved = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert saved["aggregate"] == json.loads(json.dumps(agg))
    assert "| mean of 6 missing (Avg.) |" in (tmp_path / "cv" / "cv.md").read_text()
    # resuming skips finished folds and reproduces the aggregate
    again = run_cv(
        REPO / "configs" / "train" / "cmarr_iemocap.yaml", store, tmp_path / "cv", overrides, resume=True
    )
    assert again["aggregate"] == res["aggregate"]


def test_raw_corpus_root_needs_a_store(tmp_path: Path) -> None:
    (tmp_path / "Session1").mkdir()
    with pytest.raises(ValueError, match="not a feature store"):
        _ensure_store(tmp_path, None, None, "paper")
