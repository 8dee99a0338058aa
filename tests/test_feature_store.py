from __future__ import annotations

import json

import numpy as np
import pytest

from training.data.feature_store import FeatureStore, FeatureStoreWriter

MANIFEST = {
    "dims": {"text": 4, "audio": 3, "video": 2},
    "frame_rates": {"audio": 100.0},
    "extractors": {"name": "t"},
}


def _utt(rng: np.random.Generator, n_a: int = 5, with_video: bool = True):
    feats = {
        "text": rng.normal(size=(3, 4)).astype(np.float32),
        "audio": rng.normal(size=(n_a, 3)).astype(np.float32),
    }
    pres = {"text": np.ones(3, bool), "audio": np.ones(n_a, bool)}
    if with_video:
        feats["video"] = rng.normal(size=(4, 2)).astype(np.float32)
        pres["video"] = np.array([True, False, True, True])
    return feats, pres


def test_roundtrip_missing_modality_and_meta(tmp_path):
    rng = np.random.default_rng(0)
    f1, p1 = _utt(rng)
    f2, p2 = _utt(rng, with_video=False)
    with FeatureStoreWriter(tmp_path / "s", MANIFEST, shard_size=1) as w:
        w.add("u1", f1, p1, {"label": "hap", "speaker": "a", "group": "g1", "transcript": "hi"})
        w.add("u2", f2, p2, {"label": None, "speaker": "b", "group": "g2"})
    s = FeatureStore(tmp_path / "s")
    assert len(s) == 2 and s.ids() == ["u1", "u2"] and "u1" in s
    assert s.dims == {"text": 4, "audio": 3, "video": 2}
    assert s.manifest["extractors"] == {"name": "t"}
    u1 = s.get("u1")
    for m in f1:
        np.testing.assert_array_equal(u1.features[m], f1[m])
        np.testing.assert_array_equal(u1.presence[m], p1[m])
    assert u1.meta["transcript"] == "hi" and u1.label == "hap"
    u2 = s.get("u2")
    assert u2.features["video"].shape == (0, 2) and u2.presence["video"].shape == (0,)
    assert u2.label is None and s.meta("u2")["group"] == "g2"
    assert s.lengths("u1") == {"audio": 5, "text": 3, "video": 4}
    assert [u.id for u in s] == ["u1", "u2"]
    with pytest.raises(KeyError):
        s.get("u3")


def test_resume_keeps_stored_and_drops_an_unflushed_tail(tmp_path):
    rng = np.random.default_rng(1)
    w = FeatureStoreWriter(tmp_path / "s", MANIFEST, shard_size=2)
    for i in range(3):
        w.add(f"u{i}", *_utt(rng), {"label": "neu", "speaker": "a", "group": "g"})
    # Simulate a crash: u2 sits in the unflushed buffer, never closed.
    del w
    assert FeatureStore(tmp_path / "s").ids() == ["u0", "u1"]
    with FeatureStoreWriter(tmp_path / "s", {**MANIFEST, "created": "later"}, shard_size=2) as w2:
        assert w2.has("u0") and w2.has("u1") and not w2.has("u2")
        w2.add("u2", *_utt(rng), {"label": "neu", "speaker": "a", "group": "g"})
        with pytest.raises(ValueError, match="already"):
            w2.add("u1", *_utt(rng), {"label": "neu", "speaker": "a", "group": "g"})
    s = FeatureStore(tmp_path / "s")
    assert s.ids() == ["u0", "u1", "u2"]
    assert len(list((tmp_path / "s" / "shards").glob("*.safetensors"))) == 2
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    assert index["u0"]["shard"] != index["u2"]["shard"]


def test_validation_errors(tmp_path):
    rng = np.random.default_rng(2)
    with FeatureStoreWriter(tmp_path / "s", MANIFEST) as w:
        f, p = _utt(rng)
        with pytest.raises(ValueError, match="lacks 'group'"):
            w.add("x", f, p, {"label": None, "speaker": "a"})
        bad = {**f, "audio": np.zeros((5, 7), np.float32)}
        with pytest.raises(ValueError, match="manifest dim"):
            w.add("x", bad, p, {"label": None, "speaker": "a", "group": "g"})
        with pytest.raises(ValueError, match="presence shape"):
            w.add("x", f, {**p, "audio": np.ones(2, bool)}, {"label": None, "speaker": "a", "group": "g"})
        with pytest.raises(ValueError, match="'/'"):
            w.add("a/b", f, p, {"label": None, "speaker": "a", "group": "g"})
    with pytest.raises(ValueError, match="different manifest"):
        FeatureStoreWriter(tmp_path / "s", {**MANIFEST, "dims": {"text": 5, "audio": 3, "video": 2}})
    with pytest.raises(FileNotFoundError):
        FeatureStore(tmp_path / "nothing")
