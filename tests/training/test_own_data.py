"""A user's own labelled clips train with the README's two commands: ``training.data.extract --corpus files``,
then ``training.loop.train --config configs/train/cmarr_own_data.yaml`` (the shipped recipe, extended)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.checkpoint import read_metadata
from models.config_io import load_recipe
from tests.conftest import REPO, TINY, TRAIN_CONFIG
from training.loop.train import load_train_config
from training.loop.train import main as train

OWN_CONFIG = REPO / "configs" / "train" / "cmarr_own_data.yaml"
# TINY without its "every corpus" overrides: the recipe itself has to take the clips
SMALL = [o for o in TINY if not o.startswith(("data.corpora", "data.eval_only", "model_id"))]


def test_the_readme_shows_the_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert "python -m training.extract --corpus files" in readme
    assert "--config configs/train/cmarr_own_data.yaml" in readme


def test_own_clips_train_with_the_own_data_recipe(chain_store: Path, tmp_path: Path) -> None:
    argv = ["--config", str(OWN_CONFIG), "--root", str(chain_store), "--out", str(tmp_path)]
    argv += ["--device", "cpu"]
    for o in SMALL:
        argv += ["--set", o]
    assert train(argv) == 0
    meta = read_metadata(tmp_path / "best.safetensors")["extra"]
    assert meta["model_id"] == "cmarr-own-data"
    assert meta["licence"].startswith("as the clips it was trained on")
    cfg = meta["train_config"]
    assert cfg["data"]["corpora"]["files"] == 1.0 and cfg["data"]["eval_only"] == ["cremad"]
    shipped = load_train_config(TRAIN_CONFIG)
    assert cfg["optim"]["optimizer"] == shipped.optim.optimizer and cfg["model"]["fusion_rule"] == "product"


def test_the_shipped_recipe_says_what_it_dropped(
    chain_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["--config", str(TRAIN_CONFIG), "--root", str(chain_store), "--out", str(tmp_path)]
    assert train([*argv, "--set", "progress=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0] == (
        f"python -m training.train: error: feature store {chain_store} holds no utterance to train on: "
        "4 dropped by data.corpora, which lists ['emodb', 'fer2013', 'meld', 'ravdess'] (the store's: "
        "files: 4); add the corpus there (your own clips: configs/train/cmarr_own_data.yaml)"
    )
    assert train([*argv, "--set", "data.corpora={}", "--set", "data.classes=[fea, dis]"]) == 2
    err = capsys.readouterr().err
    assert "4 dropped because their label is not one of ['fea', 'dis'] (ang: 1, hap: 1, neu: 1, sad: 1)" in (
        err
    )
    assert train([*argv, "--set", "optim.lr=-1"]) == 2
    assert capsys.readouterr().err.startswith("python -m training.train: error: optim needs lr > 0")


def test_a_recipe_extends_another(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("a: 1\nsection: {x: 1, y: {p: 1, q: 2}}\nlist: [1, 2]\n")
    (tmp_path / "mid.yaml").write_text("extends: base.yaml\nsection: {y: {q: 3}}\nlist: [9]\n")
    (tmp_path / "top.yaml").write_text("extends: mid.yaml\na: 2\n")
    top = load_recipe(tmp_path / "top.yaml")
    assert top == {"a": 2, "section": {"x": 1, "y": {"p": 1, "q": 3}}, "list": [9]}
    (tmp_path / "loop.yaml").write_text("extends: loop2.yaml\n")
    (tmp_path / "loop2.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ValueError, match="goes round in a circle: loop.yaml -> loop2.yaml -> loop.yaml"):
        load_recipe(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(FileNotFoundError, match="names no file"):
        load_recipe(tmp_path / "orphan.yaml")
    own = load_recipe(OWN_CONFIG)
    assert own["data"]["corpora"] == {"ravdess": 1.0, "emodb": 0.5, "meld": 1.0, "fer2013": 1.0, "files": 1.0}
