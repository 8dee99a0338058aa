"""AUILC, sweeps, JSON/PNG output, and the trainer/evaluate integration on real MOSI features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from training.evaluation.robustness import DEFAULT_RATES, auilc, condition_sweep, plot_curves, sweep_predict

MOSI = Path(__file__).resolve().parents[2] / "data" / "mosi-trimodal"


def test_auilc_trapezoid() -> None:
    assert auilc(DEFAULT_RATES, [0.8] * 11) == pytest.approx(0.8)
    assert auilc(DEFAULT_RATES, [1.0 - r for r in DEFAULT_RATES]) == pytest.approx(0.5)
    assert auilc([0.0, 0.5, 1.0], [1.0, 1.0, 0.0]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="increasing"):
        auilc([0.0, 0.2, 0.1], [1, 1, 1])


def _toy_batches() -> list[dict]:
    # The label is the sign of the text feature; a "model" that reads the text gets it right whenever
    # the text survives and guesses class 0 otherwise.
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(4):
        t = torch.randn(100, 1, 2, generator=g)
        out.append(
            {
                "text": t,
                "audio": torch.zeros(100, 1, 2),
                "video": torch.zeros(100, 1, 2),
                "text_mask": torch.ones(100, 1, dtype=torch.bool),
                "audio_mask": torch.ones(100, 1, dtype=torch.bool),
                "video_mask": torch.ones(100, 1, dtype=torch.bool),
                "present": torch.ones(100, 3),
                "label": (t[:, 0, 0] > 0).long(),
            }
        )
    return out


def _reader(b: dict) -> torch.Tensor:
    x = b["text"][:, 0, 0]
    pos = (x > 0).float() * b["avail"][:, 0]
    return torch.stack([1 - pos, pos], dim=1)


def test_sweep_curve_matches_expected_shape(tmp_path) -> None:
    batches = _toy_batches()
    res = sweep_predict(_reader, batches, 2, mode="rmfm", seed=3)
    assert res.accuracy[0] == 1.0  # nothing dropped
    neg = float(torch.cat([b["label"] for b in batches]).eq(0).float().mean())
    assert res.accuracy[-1] == pytest.approx(neg)  # everything dropped: always class 0
    # Accuracy = P(text kept) + P(dropped) * P(label 0) ~ 1 - r * (1 - neg); check the middle of the curve.
    assert res.accuracy[5] == pytest.approx(1 - 0.5 * (1 - neg), abs=0.06)
    assert res.dropped_fraction[5] == pytest.approx(0.5, abs=0.05)
    assert res.auilc == pytest.approx(auilc(res.rates, res.accuracy))
    again = sweep_predict(_reader, batches, 2, mode="rmfm", seed=3)
    assert again.accuracy == res.accuracy  # fixed seed
    js = json.loads(res.save_json(tmp_path / "s.json").read_text())
    assert js["mode"] == "rmfm" and len(js["accuracy"]) == 11
    png = plot_curves([res], tmp_path / "s.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = condition_sweep(_reader, batches, 2)
    assert table["t"]["accuracy"] == 1.0 and table["av"]["accuracy"] == pytest.approx(neg)


def test_trainer_and_evaluate_with_cider_on_mosi(tmp_path) -> None:
    """One real training epoch of CIDer+MSSD through training.loop.train, then the RMFM sweep through
    training.evaluation.checkpoint_eval's --missing-mode path (JSON + PNG)."""
    from models.config_io import apply_overrides, from_dict, load_yaml
    from training.config import TrainConfig
    from training.data.mosi import load_mosi
    from training.evaluation.checkpoint_eval import main as evaluate_main
    from training.loop.train import train

    cfg_dict = apply_overrides(
        load_yaml("configs/train/cider_mosi.yaml"),
        [
            f"data.root={MOSI}",
            "optim.epochs=1",
            "optim.warmup_epochs=0",
            "optim.scheduler=constant",
            "progress=false",
        ],
    )
    cfg = from_dict(TrainConfig, cfg_dict)
    splits = load_mosi(MOSI)
    # A random third of train (the files are ordered by video, so a prefix is nearly one class).
    splits.train, splits.test = splits.train[::3], splits.test[::12]  # keep the test quick on 2 cores
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(cfg, tmp_path / "run", splits=splits)
    finally:
        torch.set_num_threads(threads)
    ckpt = tmp_path / "run" / "best.safetensors"
    assert ckpt.is_file()
    out = tmp_path / "eval.json"
    assert (
        evaluate_main(
            [
                "--checkpoint",
                str(ckpt),
                "--missing-mode",
                "rmfm",
                "--json",
                str(out),
                "--split",
                "val",
                "--plots",
                str(tmp_path / "plots"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())["missing_sweep"]
    assert res["rates"] == list(DEFAULT_RATES) and 0.0 < res["auilc"] <= 1.0
    # Train-split MOSI features are near separable for held-out train videos (validation): one epoch on
    # 480 utterances is far above chance there, and at r = 1 (nothing left) the model is at chance.
    assert res["accuracy"][0] > 0.8
    assert res["accuracy"][-1] < 0.65
    assert (tmp_path / "plots" / "sweep_rmfm.png").is_file()
