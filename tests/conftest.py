"""Fixtures shared across test folders: a checkpoint that the real trainer wrote from real clips."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = REPO / "configs" / "train" / "cmarr_offline.yaml"
CREMAD = REPO / "data" / "cremad"
# Two short epochs on the clips of the chain store, whatever the model.
SHORT = [
    "optim.epochs=2",
    "optim.batch_size=4",
    "data.epoch_size=8",
    "data.val_fraction=0.5",
    "data.corpora={}",
    "data.eval_only=[]",
    "progress=false",
]
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
    *SHORT,
]


# The CIDer recipe (configs/train/cider_offline.yaml: MSSD on RMFM-masked copies), shrunk the same way.
CIDER_TRAIN_CONFIG = REPO / "configs" / "train" / "cider_offline.yaml"
CIDER_TINY = [
    "model_id=cider-chain-test",
    "model.d_model=16",
    "model.mct_heads=2",
    "model.mct_layers=1",
    *SHORT,
]


@pytest.fixture(scope="session")
def chain_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled CREMA-D clips (``files`` corpus) through the offline extractors into a feature store.

    Two speakers are declared in labels.csv so that validation holds out a whole speaker, as the
    multi-corpus recipe does (the clips are one actor: this checks the chain, not a model's quality).
    """
    from training.data.extract import main as extract

    root = tmp_path_factory.mktemp("chain") / "clips"
    root.mkdir()
    rows = ["name,label,speaker"]
    for lab, spk in (("ANG", "a"), ("NEU", "a"), ("HAP", "b"), ("SAD", "b")):
        name = f"1001_DFA_{lab}_XX"
        shutil.copy(CREMAD / f"{name}.flv", root / f"{name}.flv")
        rows.append(f"{name},{lab.lower()},{spk}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    store = root.parent / "store"
    assert extract(["--corpus", "files", "--root", str(root), "--out", str(store), "--no-progress"]) == 0
    return store


def _train(store: Path, config: Path, overrides: list[str], out: Path) -> Path:
    from training.loop.train import main as train

    args = ["--config", str(config), "--root", str(store), "--out", str(out), "--device", "cpu"]
    for o in overrides:
        args += ["--set", o]
    assert train(args) == 0
    return out / "best.safetensors"


@pytest.fixture(scope="session")
def trained_checkpoint(chain_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bundled CREMA-D clips, offline extractors -> the shipped CM-ARR recipe -> best.safetensors."""
    return _train(chain_store, TRAIN_CONFIG, TINY, tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="session")
def trained_cider_checkpoint(chain_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same store -> train the CIDer recipe (MSSD) through the same trainer -> best.safetensors."""
    return _train(chain_store, CIDER_TRAIN_CONFIG, CIDER_TINY, tmp_path_factory.mktemp("cider_run"))


@pytest.fixture(scope="session")
def shipped_trt_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model's fp32 graph as the TensorRT backend exports it (torch.export), once per session:
    the graph its fp16 and int8 graphs are converted from."""
    from engine.backends.onnxruntime_backend import cached_graph
    from engine.backends.tensorrt_backend import DYNAMO
    from engine.config import build_engine_config
    from engine.core.loading import load_fusion

    cfg = build_engine_config()
    fm = load_fusion(cfg)
    return cached_graph(fm.model, fm.cache_key, tmp_path_factory.mktemp("trt_graph"), exporter=DYNAMO)
