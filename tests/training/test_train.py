"""Training end to end on a real-format feature store: checkpoint, resume, evaluation CLI, configs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from models.checkpoint import load_checkpoint
from training.evaluation import checkpoint_eval as evaluate
from training.loop.adapters import ABLATIONS, apply_ablation
from training.loop.parts import lr_factor
from training.loop.train import load_train_config, train

from .conftest import REPO, STORE_DIMS, TINY_MODEL

CFG = REPO / "configs" / "train" / "cmarr_iemocap.yaml"


def _cfg(store: Path, *extra: str):
    return load_train_config(
        CFG,
        [
            *TINY_MODEL,
            "data.test_group=Session3",
            "data.val_fraction=0.25",
            "data.num_workers=0",
            "optim.lr=3.0e-3",
            "optim.batch_size=8",
            "optim.epochs=3",
            "early_stopping_patience=0",
            *extra,
        ],
        root=str(store),
    )


def test_train_saves_self_describing_checkpoint(store: Path, tmp_path: Path) -> None:
    res = train(_cfg(store), tmp_path / "run", device="cpu")
    assert res.epochs_run == 3 and 1 <= res.best_epoch <= 3 and res.selection_metric == "uar_mean_all"
    ck = load_checkpoint(res.best_checkpoint)
    assert ck.config.text_dim == STORE_DIMS["text"] and ck.config.class_names == ("ang", "hap", "neu", "sad")
    assert set(ck.extra["normalization"]) == {"text", "audio", "video"}
    assert len(ck.extra["normalization"]["audio"]["std"]) == STORE_DIMS["audio"]
    assert ck.extra["extractor_profile"]["identity"] == {"features": "synthetic test store"}
    assert ck.extra["model_id"] == "cmarr" and ck.extra["temperature"] > 0
    assert ck.extra["training_summary"]["best_epoch"] == res.best_epoch
    rows = list(csv.DictReader(open(res.out_dir / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["train_total"]) < float(rows[0]["train_total"])
    # test report: all 7 conditions + both summaries of the six missing ones
    t = res.test_report
    assert t is not None and set(t["conditions"]) == {"t", "a", "v", "tv", "av", "ta", "tav"}
    assert t["pooled_missing"]["n"] == 6 * 24 and "definition" in t["mean_missing"]
    # the class signal is strong: the full condition must beat chance clearly
    assert t["conditions"]["tav"]["uar"] > 0.5


def test_resume_continues_exactly(store: Path, tmp_path: Path) -> None:
    full = train(_cfg(store), tmp_path / "a", device="cpu", evaluate_test=False)
    _train_epochs(_cfg(store), tmp_path / "b", stop_after=2)  # the same run, interrupted after epoch 2
    # an interrupted run leaves its resumable state, never a checkpoint that looks finished
    assert (tmp_path / "b" / "selected.safetensors").is_file()
    assert not (tmp_path / "b" / "best.safetensors").exists()
    resumed = train(_cfg(store), tmp_path / "b", device="cpu", resume=True, evaluate_test=False)
    assert resumed.epochs_run == 3
    finished = load_checkpoint(resumed.best_checkpoint).extra
    assert finished["temperature"] > 0 and "calibration" in finished
    assert "calibration" not in load_checkpoint(tmp_path / "b" / "selected.safetensors").extra
    sa = torch.load(full.out_dir / "last_state.pt", weights_only=True)["model"]
    sb = torch.load(resumed.out_dir / "last_state.pt", weights_only=True)["model"]
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    rows = list(csv.DictReader(open(resumed.out_dir / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]


def _train_epochs(cfg, out: Path, stop_after: int) -> None:
    """Run ``train`` but make it stop after ``stop_after`` epochs, as an interruption would."""
    import training.loop.model_setup as tt  # where validation calls the evaluator

    calls = {"n": 0}
    real = tt.evaluate_conditions

    def interrupt(*a, **k):
        calls["n"] += 1
        if calls["n"] > stop_after:
            raise KeyboardInterrupt
        return real(*a, **k)

    tt.evaluate_conditions = interrupt
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg, out, device="cpu", evaluate_test=False)
    finally:
        tt.evaluate_conditions = real


def test_evaluate_cli_writes_report_and_plots(store: Path, tmp_path: Path) -> None:
    res = train(_cfg(store, "optim.epochs=1"), tmp_path / "run", device="cpu", evaluate_test=True)
    out = tmp_path / "eval.json"
    assert (
        evaluate.main(
            [
                "--checkpoint",
                str(res.best_checkpoint),
                "--json",
                str(out),
                "--plots",
                str(tmp_path / "plots"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    rep = json.loads(out.read_text())
    assert rep["n"] == 24 and rep["split"] == "test"
    # the CLI rebuilt the same test split and normalisation as training did
    for c in ("t", "tav", "av"):
        assert rep["conditions"][c]["war"] == pytest.approx(res.test_report["conditions"][c]["war"])
    assert rep["mean_missing"]["war"] == pytest.approx(
        sum(rep["conditions"][c]["war"] for c in ("t", "a", "v", "tv", "av", "ta")) / 6
    )
    for name in ("confusion_full.png", "confusion_pooled_missing.png", "conditions.png"):
        p = tmp_path / "plots" / name
        assert p.is_file() and p.read_bytes()[:4] == b"\x89PNG"


def test_configs_load_and_ablations_are_one_override() -> None:
    for path in sorted((REPO / "configs" / "train").glob("cmarr_*.yaml")):
        cfg = load_train_config(path)
        assert cfg.model_type == "cmarr"
    paper = load_train_config(CFG)
    assert (paper.optim.lr, paper.optim.batch_size, paper.optim.epochs) == (1e-5, 16, 100)
    assert (paper.model["losses"]["alpha"], paper.model["losses"]["beta"], paper.model["losses"]["lam"]) == (
        1,
        0.1,
        10,
    )
    assert set(ABLATIONS) == {"none", "baseline", "wo_udcl", "wo_spcl", "w_point"}
    m, mode = apply_ablation(paper.model, "wo_udcl")
    assert m["losses"]["alpha"] == 0.0 and m["losses"]["beta"] == 0.1 and mode is None
    m, mode = apply_ablation(paper.model, "w_point")
    assert m["embedding"] == "point"
    base = load_train_config(CFG, ["ablation=baseline"])
    assert base.effective_missing_mode == "full" and base.selection_metric == "uar_full"
    with pytest.raises(ValueError, match="ablation must be one of"):
        load_train_config(CFG, ["ablation=nope"])


def test_mismatched_dims_are_rejected(store: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="another extractor profile"):
        train(_cfg(store, "model.text_dim=768"), tmp_path / "x", device="cpu")


def test_lr_schedules() -> None:
    cfg = load_train_config(CFG, ["optim.epochs=10", "optim.warmup_epochs=1", "optim.scheduler=cosine"])
    assert lr_factor(0, 10, cfg) == pytest.approx(0.1)
    assert lr_factor(10, 10, cfg) == pytest.approx(1.0)
    assert lr_factor(99, 10, cfg) < 0.01
    step = load_train_config(CFG, ["optim.scheduler=step", "optim.step_epochs=3", "optim.gamma=0.5"])
    assert lr_factor(2 * 10, 10, step) == 1.0 and lr_factor(3 * 10, 10, step) == 0.5


def test_checkpoint_is_safetensors_with_config(store: Path, tmp_path: Path) -> None:
    res = train(_cfg(store, "optim.epochs=1"), tmp_path / "r", device="cpu", evaluate_test=False)
    with safe_open(str(res.best_checkpoint), framework="pt") as f:
        meta = f.metadata()
    assert meta["model_type"] == "cmarr" and json.loads(meta["config"])["d_model"] == 16


def test_evaluate_missing_mode_calls_robustness_sweep(store: Path, tmp_path: Path) -> None:
    res = train(_cfg(store, "optim.epochs=1"), tmp_path / "run", device="cpu", evaluate_test=True)
    out = tmp_path / "smm.json"
    args = [
        "--checkpoint",
        str(res.best_checkpoint),
        "--device",
        "cpu",
        "--missing-mode",
        "smm",
        "--json",
        str(out),
    ]
    assert evaluate.main(args) == 0
    sweep = json.loads(out.read_text())["missing_sweep"]
    assert sweep["mode"] == "smm"
    # the 7 fixed combinations through training.evaluation.robustness agree with this module's condition
    # report
    for c in ("t", "a", "v", "tv", "av", "ta", "tav"):
        assert sweep["conditions"][c]["accuracy"] == pytest.approx(res.test_report["conditions"][c]["war"])
    rmfm = tmp_path / "rmfm.json"
    args = [
        "--checkpoint",
        str(res.best_checkpoint),
        "--device",
        "cpu",
        "--missing-mode",
        "rmfm",
        "--rates",
        "0,0.5,1",
        "--json",
        str(rmfm),
        "--plots",
        str(tmp_path / "p"),
    ]
    assert evaluate.main(args) == 0
    curve = json.loads(rmfm.read_text())["missing_sweep"]
    assert curve["rates"] == [0.0, 0.5, 1.0] and len(curve["accuracy"]) == 3
    assert curve["accuracy"][0] == pytest.approx(res.test_report["conditions"]["tav"]["war"])  # rate 0 = full
    assert (tmp_path / "p" / "sweep_rmfm.png").is_file()
