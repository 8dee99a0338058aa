"""Dataset / collate / normalisation / splits, on the real MOSI features and a real-format store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.data.dataset import FeatureDataset, Normalizer, Sample, collate
from training.data.mosi import load_mosi
from training.data.splits import grouped_split
from training.data.store_dataset import store_groups, store_splits

from .conftest import CLASSES, MOSI, STORE_DIMS


@pytest.fixture(scope="module")
def mosi():
    return load_mosi(MOSI)


def test_mosi_splits_are_speaker_independent(mosi) -> None:
    assert len(mosi.train) + len(mosi.val) == 1447 and len(mosi.test) == 752
    train_v, val_v, test_v = ({s.group for s in x} for x in (mosi.train, mosi.val, mosi.test))
    assert len(train_v | val_v) == 62 and len(test_v) == 31
    assert not (train_v & val_v) and not (train_v & test_v) and not (val_v & test_v)
    assert 0.15 < len(mosi.val) / 1447 < 0.3
    # test labels: 285 negative, 467 positive (majority 62.1%)
    assert np.bincount([s.label for s in mosi.test]).tolist() == [285, 467]
    s = mosi.train[0]
    assert {m: s.features[m].shape for m in s.features} == {
        "text": (1, 100),
        "audio": (1, 73),
        "video": (1, 100),
    }
    assert s.id.startswith(s.group + "_")


def test_normalizer_uses_train_statistics(mosi) -> None:
    norm = Normalizer.fit(mosi.train, mosi.dims)
    audio = np.concatenate([s.features["audio"] for s in mosi.train]).astype(np.float64)
    assert np.allclose(norm.mean["audio"], audio.mean(axis=0), atol=1e-6)
    sd = audio.std(axis=0)
    assert np.allclose(norm.std["audio"], np.where(sd < 1e-6, 1.0, sd), rtol=1e-5, atol=1e-6)
    ds = FeatureDataset(mosi.train, mosi.dims, norm)
    z = torch.cat([ds[i]["audio"] for i in range(len(ds))]).numpy()
    keep = sd > 1e-6
    assert np.allclose(z.mean(axis=0)[keep], 0.0, atol=1e-4) and np.allclose(
        z.std(axis=0)[keep], 1.0, atol=1e-3
    )
    assert Normalizer.from_dict(norm.to_dict()).mean == norm.mean


def test_collate_pads_and_marks_missing() -> None:
    dims = {"text": 3, "audio": 2, "video": 4}
    a = Sample(
        "a",
        "g",
        1,
        {
            "text": np.ones((2, 3), np.float32),
            "audio": np.ones((5, 2), np.float32),
            "video": np.zeros((0, 4), np.float32),
        },
    )
    b = Sample(
        "b",
        "h",
        0,
        {
            "text": np.full((4, 3), 2, np.float32),
            "audio": np.ones((1, 2), np.float32),
            "video": np.ones((3, 4), np.float32),
        },
        valid={"video": np.array([True, False, True])},
    )
    batch = collate([FeatureDataset([a, b], dims)[i] for i in range(2)])
    assert (
        batch["text"].shape == (2, 4, 3)
        and batch["audio"].shape == (2, 5, 2)
        and batch["video"].shape == (2, 3, 4)
    )
    assert batch["text_mask"].tolist() == [[True, True, False, False], [True] * 4]
    assert batch["video_mask"].tolist() == [[False, False, False], [True, False, True]]
    assert batch["present"].tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
    assert batch["label"].tolist() == [1, 0] and batch["id"] == ["a", "b"] and batch["group"] == ["g", "h"]
    assert float(batch["text"][0, 2:].abs().sum()) == 0.0  # padding is zero
    assert float(batch["video"][1, 1].abs().sum()) == 0.0  # invalid frame zeroed


def test_grouped_split_keeps_groups_whole() -> None:
    samples = [Sample(f"{g}{i}", g, 0, {}) for g in "abcdefghij" for i in range(3)]
    train, val = grouped_split(samples, 0.3, seed=1)
    assert not ({s.group for s in train} & {s.group for s in val})
    assert len(val) == 9 and len(train) == 21


def test_store_splits_leave_one_group_out(store: Path) -> None:
    assert store_groups(store) == ["Session1", "Session2", "Session3"]
    sp = store_splits(store, CLASSES, "Session2", val_fraction=0.25, val_by="random", seed=0)
    assert {s.group for s in sp.test} == {"Session2"} and len(sp.test) == 24  # "fru" dropped
    assert not any(s.group == "Session2" for s in sp.train + sp.val)
    assert len(sp.train) + len(sp.val) == 48 and sp.dims == STORE_DIMS
    # 'exc' in the store is counted as hap (index 1)
    assert np.bincount([s.label for s in sp.test]).tolist() == [6, 6, 6, 6]
    ds = FeatureDataset(sp.test, sp.dims)
    item = ds[[s.id for s in sp.test].index("Session2_u003")]
    assert item["present"].tolist() == [1.0, 1.0, 0.0]  # utterance stored without video
    item0 = ds[[s.id for s in sp.test].index("Session2_u000")]
    assert item0["video_mask"][0].item() is False and bool(item0["video_mask"][1:].all())
    with pytest.raises(ValueError, match="not in the store"):
        store_splits(store, CLASSES, "Session9")
