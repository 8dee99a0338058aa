"""Shared fixtures: a small real-format feature store and tiny model overrides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MOSI = REPO / "data" / "mosi-trimodal"
CLASSES = ("ang", "hap", "neu", "sad")
STORE_DIMS = {"text": 8, "audio": 6, "video": 5}
# A CM-ARR small enough to train in seconds on 2 CPU cores.
TINY_MODEL = [
    "model.d_model=16",
    "model.num_segments=2",
    "model.flow_steps=1",
    "model.flow_hidden=16",
    "model.rcab_blocks=1",
    "model.rcab_reduction=4",
    "model.umc_dim=8",
    "model.umc_heads=2",
    "model.fusion_heads=2",
    "progress=false",
]


def write_store(
    root: Path,
    groups: tuple[str, ...] = ("Session1", "Session2", "Session3"),
    per_group: int = 24,
    seed: int = 0,
) -> Path:
    """A feature store whose class shows in every modality's mean (so a model can learn it), with
    variable lengths, frames without a face, a missing modality and labels in raw corpus spellings."""
    from training.data.feature_store import FeatureStoreWriter

    rng = np.random.default_rng(seed)
    raw = {"ang": "ang", "hap": "exc", "neu": "neu", "sad": "sad"}  # excited must count as happy
    manifest = {
        "dims": STORE_DIMS,
        "frame_rates": {"audio": 50.0, "video": 30.0},
        "extractors": {"name": "test", "identity": {"features": "synthetic test store"}},
    }
    with FeatureStoreWriter(root, manifest, shard_size=16) as w:
        for g in groups:
            for i in range(per_group):
                c = i % 4
                feats, pres = {}, {}
                for m, d in STORE_DIMS.items():
                    n = int(rng.integers(2, 7))
                    x = rng.normal(0, 1, (n, d)).astype(np.float32)
                    x[:, c % d] += 2.0
                    feats[m], pres[m] = x, np.ones(n, bool)
                pres["video"][0] = False  # the first frame has no face
                feats["video"][0] = 0.0
                if i % 7 == 3:  # no video at all for this utterance
                    feats["video"] = np.zeros((0, STORE_DIMS["video"]), np.float32)
                    pres["video"] = np.zeros(0, bool)
                w.add(
                    f"{g}_u{i:03d}",
                    feats,
                    pres,
                    {"label": raw[CLASSES[c]], "speaker": f"{g}{'FM'[i % 2]}", "group": g},
                )
            w.add(
                f"{g}_other",
                {m: np.ones((2, d), np.float32) for m, d in STORE_DIMS.items()},
                {},
                {"label": "fru", "speaker": f"{g}F", "group": g},
            )
    return root


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_store(tmp_path_factory.mktemp("store") / "fs")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The models here are tiny: intra-op threads only add synchronisation cost (and on a busy machine
    spinning OpenMP workers make them many times slower), so these tests run torch on one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
