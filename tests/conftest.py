"""Fixtures shared across test folders: a checkpoint that the real trainer wrote from real clips."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = REPO / "configs" / "train" / "cmarr_offline.yaml"
CREMAD = REPO / "data" / "cremad"
# The shipped training recipe, shrunk to seconds on 2 CPU cores: a tiny CM-ARR, two short epochs.
TINY = [
    "model_id=chain-test",
    "model.d_model=16",
    "model.num_segments=2",
    "model.flow_steps=1",
    "model.flow_hidden=16",
    "model.rcab_blocks=1",
    "model.rcab_reduction=4",
    "model.umc_dim=8",
    "model.umc_heads=2",
    "model.fusion_heads=2",
    "optim.epochs=2",
    "optim.batch_size=4",
    "data.epoch_size=8",
    "data.val_fraction=0.5",
    "data.corpora={}",
    "data.eval_only=[]",
    "progress=false",
]


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """extract (bundled CREMA-D clips, ``files`` corpus, offline extractors) -> train -> best.safetensors.

    Two speakers are declared in labels.csv so that validation holds out a whole speaker, as the
    multi-corpus recipe does (the clips are one actor: this checks the chain, not a model's quality).
    """
    from training.extract import main as extract
    from training.train import main as train

    root = tmp_path_factory.mktemp("chain") / "clips"
    root.mkdir()
    rows = ["name,label,speaker"]
    for lab, spk in (("ANG", "a"), ("NEU", "a"), ("HAP", "b"), ("SAD", "b")):
        name = f"1001_DFA_{lab}_XX"
        shutil.copy(CREMAD / f"{name}.flv", root / f"{name}.flv")
        rows.append(f"{name},{lab.lower()},{spk}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    store, run = root.parent / "store", root.parent / "run"
    assert extract(["--corpus", "files", "--root", str(root), "--out", str(store), "--no-progress"]) == 0
    args = ["--config", str(TRAIN_CONFIG), "--root", str(store), "--out", str(run), "--device", "cpu"]
    for o in TINY:
        args += ["--set", o]
    assert train(args) == 0
    return run / "best.safetensors"
