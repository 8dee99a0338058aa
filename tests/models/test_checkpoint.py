"""The checkpoint reader on the shipped model's file and on files damaged the ways files get damaged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import models.checkpoint as checkpoint
from models.checkpoint import (
    CheckpointFileError,
    load_checkpoint,
    load_fusion_checkpoint,
    read_metadata,
    save_checkpoint,
)
from models.cmarr import CMARR, CMARRConfig
from models.files import file_sha256
from models.fusion_meta import CheckpointMetaError

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "assets" / "cmarr_offline_v3.safetensors"
TINY = dict(text_dim=10, audio_dim=12, video_dim=7, d_model=16, umc_dim=8, flow_hidden=16, umc_heads=2,
            fusion_heads=2, num_segments=4, rcab_blocks=1, flow_steps=2, rcab_reduction=4)


def test_the_shipped_checkpoint_is_read_once_with_its_weights_metadata_and_hash(monkeypatch) -> None:
    reads: list[Path] = []
    read_bytes = Path.read_bytes

    def counting(self: Path) -> bytes:
        reads.append(self)
        return read_bytes(self)

    def no_second_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("the loader opened the file a second time")

    monkeypatch.setattr(Path, "read_bytes", counting)
    monkeypatch.setattr(checkpoint, "safe_open", no_second_open)
    monkeypatch.setattr(checkpoint, "file_sha256", no_second_open)
    ck = load_fusion_checkpoint(SHIPPED)
    monkeypatch.undo()

    assert reads == [SHIPPED]
    assert ck.sha256 == file_sha256(SHIPPED)
    assert ck.identity == f"{ck.meta.model_id}:{ck.sha256[:12]}"
    assert ck.meta.class_names == tuple(ck.config.class_names)
    assert ck.meta.fusion_rule == read_metadata(SHIPPED)["extra"]["fusion_rule"]
    state = ck.model.state_dict()
    with safe_open(str(SHIPPED), framework="pt") as f:
        keys = list(f.keys())
        assert sorted(keys) == sorted(state)
        for k in keys:
            assert torch.equal(f.get_tensor(k), state[k]), k
    assert not ck.model.training


def test_damaged_files_fail_with_one_reason(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CMARR(CMARRConfig(**TINY))
    good = tmp_path / "good.safetensors"
    sha = save_checkpoint(good, model, extra={"note": "no fusion metadata"})
    assert load_checkpoint(good).sha256 == sha == file_sha256(good)
    with pytest.raises(CheckpointMetaError, match="fusion metadata version None"):
        load_fusion_checkpoint(good)  # a model checkpoint, but not a trained fusion model's

    data = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointFileError, match="not a readable .safetensors checkpoint"):
        load_checkpoint(cut)

    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "something-else"})
    for reader in (load_checkpoint, read_metadata):
        with pytest.raises(CheckpointFileError, match="is not a cmarr-engine-checkpoint file"):
            reader(foreign)

    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.safetensors")
