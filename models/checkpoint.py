"""Self-describing checkpoints in safetensors.

A checkpoint file holds the weights plus metadata (all JSON strings, as safetensors requires):
``format`` ("cmarr-engine-checkpoint"), ``version``, ``model_type`` ("cmarr", "cider", ...), ``config``
(the model config as a dict, enough to rebuild the model with no training config) and ``extra``
(anything the producer records: normalisation statistics, extractor profile, class names, training
summary). Loading never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config_io import from_dict, to_dict
from .families import family, family_of
from .files import file_sha256
from .fusion_meta import CheckpointMetaError, FusionMeta

FORMAT = "cmarr-engine-checkpoint"
VERSION = "1"


@dataclass
class Checkpoint:
    model: torch.nn.Module
    config: Any
    model_type: str
    extra: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    meta: FusionMeta | None = None  # the fusion metadata, read by load_fusion_checkpoint

    @property
    def identity(self) -> str:
        """Short stable identity for events and caches: the trainer's model id (else the model type) +
        the first 12 hex of the file hash."""
        name = self.extra.get("model_id") or self.model_type
        return f"{name}:{self.sha256[:12]}" if self.sha256 else f"{name}:unsaved"


def save_checkpoint(path: str | Path, model: torch.nn.Module, extra: dict[str, Any] | None = None) -> str:
    """Write weights + config + extra to ``path`` (safetensors); returns the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model_type": family_of(model),
        "config": json.dumps(to_dict(model.config)),  # type: ignore[attr-defined]
        "extra": json.dumps(extra or {}),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)  # atomic: an interrupted save never leaves a half-written checkpoint
    return file_sha256(path)


class CheckpointFileError(ValueError):
    """A checkpoint file that cannot be read: not safetensors, truncated, or not written by this project."""


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"checkpoint not found: {path}. Train one with `python -m training.train --config ...` "
        "or pass the path of an existing .safetensors checkpoint.")


def _parse_metadata(path: Path, meta: dict[str, str] | None) -> dict[str, Any]:
    meta = meta or {}
    if meta.get("format") != FORMAT:
        raise CheckpointFileError(f"{path} is not a {FORMAT} file (metadata format={meta.get('format')!r})")
    try:
        return {"model_type": meta["model_type"], "version": meta.get("version"),
                "config": json.loads(meta["config"]), "extra": json.loads(meta.get("extra", "{}"))}
    except (KeyError, ValueError) as e:
        raise CheckpointFileError(f"{path}: its metadata is malformed ({type(e).__name__}: {e})") from None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The header only (model type, config, extra): a cheap check before anything loads."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
    except (SafetensorError, OSError) as e:
        raise CheckpointFileError(f"{path} is not a readable .safetensors checkpoint ({e})") from None
    return _parse_metadata(path, meta)


def _header_metadata(data: bytes) -> dict[str, str] | None:
    """The ``__metadata__`` of a safetensors buffer whose tensors already parsed (so its header is valid):
    8 bytes little-endian header length, then the JSON header."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]).get("__metadata__")


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> Checkpoint:
    """Rebuild the model from the file alone, reading the file once (weights, metadata and its sha256
    from the same bytes); weights are loaded strictly."""
    from safetensors.torch import load as load_tensors

    path = Path(path)
    if not path.is_file():
        raise _missing(path)
    data = path.read_bytes()
    try:
        state = load_tensors(data)
    except (SafetensorError, ValueError) as e:
        raise CheckpointFileError(f"{path} is not a readable .safetensors checkpoint ({e})") from None
    meta = _parse_metadata(path, _header_metadata(data))
    model_cls, cfg_cls = family(meta["model_type"], where=str(path))
    cfg = from_dict(cfg_cls, meta["config"])
    model = model_cls(cfg)
    model.load_state_dict({k: v.to(map_location) for k, v in state.items()}, strict=True)
    model.eval()
    return Checkpoint(model=model, config=cfg, model_type=meta["model_type"], extra=meta["extra"],
                      sha256=hashlib.sha256(data).hexdigest())


def load_fusion_checkpoint(path: str | Path, map_location: str = "cpu") -> Checkpoint:
    """A trained fusion checkpoint: :func:`load_checkpoint` plus its validated fusion metadata
    (``Checkpoint.meta``, a :class:`FusionMeta`; CheckpointMetaError names what is wrong)."""
    ck = load_checkpoint(path, map_location)
    ck.meta = FusionMeta.from_extra(ck.extra, source=f"checkpoint {Path(path).name}")
    if tuple(getattr(ck.config, "class_names", ck.meta.class_names)) != ck.meta.class_names:
        raise CheckpointMetaError(f"checkpoint class names {ck.meta.class_names} differ from its model's")
    return ck
