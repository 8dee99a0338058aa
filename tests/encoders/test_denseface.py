from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from models.encoders.denseface import (
    FERPLUS_CLASSES,
    MEAN,
    STD,
    DenseFace,
    DenseFaceConfig,
    DenseFaceEmbedder,
    load_denseface,
    preprocess,
    save_denseface,
)
from models.labels import FOUR_CLASSES
from training.denseface.data import load_fer4, pack
from training.denseface.fit import augment, fit
from training.denseface.train import load_ferplus, main, majority_label

FIXTURE = Path(__file__).parent / "data" / "ferplus_tiny"
FER4 = Path(__file__).resolve().parents[3] / "shared" / "data" / "fer2013-4class.npz"


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
    small = DenseFaceConfig(depth=10)  # one bottleneck per block: the same code path, CI-sized
    kw = dict(config=small, epochs=8, batch_size=4, lr=0.05, log=False, progress=False)
    res = fit(s, out, FERPLUS_CLASSES, **kw)
    assert res["done"] and out.is_file() and 0.0 <= res["val"]["uar"] <= 1.0 and res["val"]["n"] == 2
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    history = json.loads(meta["extra"])["history"]
    assert len(history) == 8 and json.loads(meta["class_names"]) == list(FERPLUS_CLASSES)
    assert history[-1]["loss"] < history[0]["loss"]  # it learns the 7 faces
    emb = DenseFaceEmbedder(out)  # the recorded config rebuilds the small network
    r = emb(s["val"].images)
    assert r.features.shape == (2, small.feature_dim) and r.probs.shape == (2, 8)
    np.testing.assert_allclose(r.probs.sum(1), 1, atol=1e-5)


@pytest.fixture(scope="module")
def fer4(tmp_path_factory):
    """Real FER2013 faces (8 per class and split) cropped by the engine's face path."""
    if not FER4.is_file():
        pytest.skip(f"{FER4} not found (the shared data folder)")
    cache = tmp_path_factory.mktemp("crops")
    splits, counts = load_fer4(FER4, cache, limit=8)
    return splits, counts, cache


def test_fer4_faces_are_cropped_by_the_engine_face_path(fer4):
    splits, counts, cache = fer4
    assert {k: counts[k] for k in ("train", "val", "test")} == {"train": 32, "val": 32, "test": 32}
    assert 0 <= counts["fallback"] < 96 * 0.5  # the detector finds most FER faces on a webcam-like frame
    for sp in splits.values():
        assert sp.images.shape == (32, 64, 64) and sp.images.dtype == np.uint8 and sp.images.std() > 20
        assert np.bincount(sp.labels, minlength=4).tolist() == [8, 8, 8, 8]
    # The crop is the engine's: the same still through FaceFeatureExtractor's detector and crop_face.
    from models.encoders.face import FaceDetector, crop_face
    from training.data.face_views import still_views

    with np.load(FER4) as d:
        i = int(np.flatnonzero((d["split"] == "train") & (d["label"] == "ang"))[0])
        frame = still_views(d["images"][i], 1, str(d["name"][i]))[0]
    with FaceDetector() as det:
        boxes = det.detect(frame)
    if boxes:
        largest = max(boxes, key=lambda b: b.area)
        np.testing.assert_array_equal(splits["train"].images[0], crop_face(frame, largest))
    again, counts_again = load_fer4(FER4, cache, limit=8)  # read from the cache: the same crops
    np.testing.assert_array_equal(again["test"].images, splits["test"].images)
    assert counts_again == counts
    packed = cache / "packed.npz"  # the self-contained JPEG pack a GPU machine trains from
    pack(splits, counts["fallback"], packed)
    unpacked, counts_packed = load_fer4(packed)
    assert counts_packed == counts
    for name, sp in splits.items():
        np.testing.assert_array_equal(unpacked[name].labels, sp.labels)
        err = np.abs(unpacked[name].images.astype(float) - sp.images).mean()
        assert err < 3.0, err  # grey levels: JPEG quality 90


def test_resumed_training_gives_the_weights_of_one_run(fer4, tmp_path):
    splits, _, _ = fer4
    small = DenseFaceConfig(depth=10, num_classes=4, stem_stride=2)
    kw = dict(config=small, epochs=3, batch_size=16, lr=0.05, log=False, progress=False, seed=3)
    whole = fit(splits, tmp_path / "whole.safetensors", FOUR_CLASSES, state=tmp_path / "whole.pt", **kw)
    part = fit(splits, tmp_path / "part.safetensors", FOUR_CLASSES, state=tmp_path / "part.pt",
               epochs_this_run=2, **kw)  # fmt: skip
    assert whole["done"] and whole["epoch"] == 3
    assert not part["done"] and part["epoch"] == 2 and not (tmp_path / "part.safetensors").exists()
    rest = fit(splits, tmp_path / "part.safetensors", FOUR_CLASSES, state=tmp_path / "part.pt", **kw)
    assert rest["done"] and rest["epoch"] == 3 and [h["epoch"] for h in rest["history"]] == [1, 2, 3]
    a, b = load_denseface(tmp_path / "whole.safetensors"), load_denseface(tmp_path / "part.safetensors")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    assert a.class_names == FOUR_CLASSES and rest["test"]["n"] == 32
    with pytest.raises(ValueError, match="different run"):  # a state of another run is never mixed in
        fit(splits, tmp_path / "x.safetensors", FOUR_CLASSES, state=tmp_path / "part.pt", **{**kw, "seed": 4})


def test_strided_stem_keeps_the_342_d_feature():
    cfg = DenseFaceConfig(stem_stride=2)
    model = DenseFace(cfg).eval()
    with torch.inference_mode():
        logits, feat = model(torch.randn(2, 1, 64, 64))
    assert feat.shape == (2, 342) and logits.shape == (2, 8) and model.stem.stride == (2, 2)
    with pytest.raises(ValueError, match="stem_stride"):
        DenseFaceConfig(stem_stride=3)


def test_augment_is_seeded_and_keeps_shape():
    x = preprocess(np.random.default_rng(0).integers(0, 255, (4, 64, 64), dtype=np.uint8))
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)


def test_cli_refuses_a_missing_dataset_in_one_line(tmp_path, capsys):
    assert main(["--fer4", str(tmp_path / "none.npz"), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert main(["--fer2013", "x.csv", "--out", str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not found" in err[0] and "--fer4" in err[1]


def test_a_four_class_weights_file_sets_the_profile_dims(tmp_path):
    from models.encoders.profile import build_extractors, load_profile

    small = DenseFaceConfig(depth=10, num_classes=4, stem_stride=2)
    path = tmp_path / "d4.safetensors"
    save_denseface(path, DenseFace(small), class_names=FOUR_CLASSES)
    with pytest.raises(ValueError, match="4 class names"):
        save_denseface(path, DenseFace(DenseFaceConfig(depth=10)), class_names=FOUR_CLASSES)
    ex = build_extractors(load_profile("offline", ["face.model=denseface", f"face.weights={path}"]))
    assert ex.dims["video"] == small.feature_dim + 4  # the file's own config and classes, not FER+'s 8
    emb = DenseFaceEmbedder(path)
    assert emb.class_names == FOUR_CLASSES and emb.model.config == small
