from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from models.encoders.denseface import (
    MEAN,
    STD,
    DenseFace,
    DenseFaceConfig,
    DenseFaceEmbedder,
    load_denseface,
    preprocess,
    save_denseface,
)
from training.train_denseface import load_ferplus, majority_label, train

FIXTURE = Path(__file__).parent / "data" / "ferplus_tiny"


def test_densenet_bc_100_12_shapes():
    cfg = DenseFaceConfig()
    assert cfg.layers_per_block == 16 and cfg.feature_dim == 342
    model = DenseFace(cfg).eval()
    blocks = [m for m in model.features if isinstance(m, torch.nn.Sequential)]
    assert [len(b) for b in blocks] == [16, 16, 16]
    # 0.77 M parameters: DenseNet-BC-100 (k=12) with a 1-channel stem and an 8-way head.
    assert 0.7e6 < sum(p.numel() for p in model.parameters()) < 0.85e6
    with torch.inference_mode():
        logits, feat = model(torch.randn(2, 1, 64, 64))
    assert logits.shape == (2, 8) and feat.shape == (2, 342)
    with pytest.raises(ValueError, match="6k"):
        DenseFaceConfig(depth=101)


def test_preprocess_uses_the_paper_statistics():
    g = np.full((1, 64, 64), 131, np.uint8)
    np.testing.assert_allclose(preprocess(g).numpy(), (131 - MEAN) / STD, atol=1e-6)
    g[0, 0, 0] = 255
    assert preprocess(g)[0, 0, 0, 0].item() == pytest.approx((255 - MEAN) / STD)


def test_save_load_roundtrip(tmp_path):
    model = DenseFace().eval()
    save_denseface(tmp_path / "d.safetensors", model, {"note": "roundtrip"})
    loaded = load_denseface(tmp_path / "d.safetensors")
    x = torch.randn(1, 1, 64, 64)
    with torch.inference_mode():
        np.testing.assert_allclose(model(x)[1].numpy(), loaded(x)[1].numpy(), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="train_denseface"):
        load_denseface(tmp_path / "missing.safetensors")


def test_ferplus_majority_rules():
    #                neu hap sur sad ang dis fea con unk NF
    assert majority_label([2, 8, 0, 0, 0, 0, 0, 0, 0, 0]) == 1
    assert majority_label([5, 5, 0, 0, 0, 0, 0, 0, 0, 0]) is None  # tie: no majority
    assert majority_label([1, 6, 0, 1, 1, 0, 1, 0, 0, 0]) == 1  # single votes dropped first
    assert majority_label([3, 0, 0, 0, 0, 0, 0, 0, 0, 7]) is None  # not a face
    assert majority_label([0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) is None


def test_loader_on_real_format_fixture():
    s = load_ferplus(FIXTURE / "fer2013.csv", FIXTURE / "fer2013new.csv")
    # 9 Training rows -> 7 kept (NF and tie dropped); PublicTest 2; PrivateTest 2 -> 1.
    assert len(s["train"].labels) == 7 and len(s["val"].labels) == 2 and len(s["test"].labels) == 1
    assert s["train"].images.shape == (7, 64, 64) and s["train"].images.dtype == np.uint8
    # FER+ class order: neutral happiness surprise sadness anger disgust fear contempt
    assert s["train"].labels.tolist() == [4, 5, 6, 1, 3, 0, 1]
    assert s["val"].labels.tolist() == [4, 0]
    assert s["train"].images.std() > 10  # real faces, not blank images


def test_training_runs_and_writes_loadable_weights(tmp_path):
    s = load_ferplus(FIXTURE / "fer2013.csv", FIXTURE / "fer2013new.csv")
    out = tmp_path / "denseface.safetensors"
    torch.manual_seed(0)
    small = DenseFaceConfig(depth=10)  # one bottleneck per block: the same code path, CI-sized
    metrics = train(s, out, epochs=8, batch_size=4, lr=0.05, log=False, config=small)
    assert out.is_file() and 0.0 <= metrics["val_acc"] <= 1.0 and metrics["train_faces"] == 7
    with safe_open(str(out), framework="pt") as f:
        history = json.loads(f.metadata()["extra"])["history"]
    assert len(history) == 8
    assert history[-1]["loss"] < history[0]["loss"]  # it learns the 7 faces
    emb = DenseFaceEmbedder(out)  # the recorded config rebuilds the small network
    r = emb(s["val"].images)
    assert r.features.shape == (2, small.feature_dim) and r.probs.shape == (2, 8)
    np.testing.assert_allclose(r.probs.sum(1), 1, atol=1e-5)
