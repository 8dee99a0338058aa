"""What a training run builds from its config and data: the model (with the data's feature layout), the
validation report that selects epochs, and the metadata every checkpoint carries for the engine."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from models.config_io import to_dict
from models.fusion_meta import FusionMeta
from training.config import TrainConfig
from training.data.dataset import DataSplits, Normalizer
from training.evaluation.conditions import evaluate_conditions
from training.loop.adapters import ModelAdapter, apply_ablation, get_adapter


def logprob_tail(splits: DataSplits) -> tuple[int, int, int]:
    """Trailing feature dims per modality that are log-probabilities: the face model's classes when the
    extractor profile appends them (``face.logprobs``), else none."""
    desc = (splits.description.get("store_manifest") or {}).get("extractors") or {}
    face = (desc.get("config") or {}).get("face") or {}
    if not face.get("logprobs"):
        return (0, 0, 0)
    if face.get("model") == "denseface":
        from models.encoders.denseface import FERPLUS_CLASSES as names
    else:
        from models.encoders.mini_xception import CLASS_NAMES as names
    return (0, 0, len(names))


def build_model(cfg: TrainConfig, splits: DataSplits) -> tuple[ModelAdapter, torch.nn.Module, Any]:
    adapter = get_adapter(cfg.model_type)
    model_dict, _ = apply_ablation(cfg.model, cfg.ablation)
    if cfg.model_type == "cmarr" and model_dict.get("pooled_skip") and "logprob_tail" not in model_dict:
        model_dict = {**model_dict, "logprob_tail": list(logprob_tail(splits))}
    model_cfg = adapter.make_config(model_dict, splits.dims, splits.class_names)
    return adapter, adapter.build(model_cfg), model_cfg


def validate(
    model: torch.nn.Module,
    adapter: ModelAdapter,
    loader: DataLoader,
    splits: DataSplits,
    normalizer: Normalizer,
    device: torch.device,
    max_len: dict[str, int],
) -> Any:
    """The validation report that selects the epoch: natural conditions per corpus for multi-corpus data,
    every availability condition otherwise."""
    if splits.description.get("source") == "multi":
        from training.evaluation.natural import evaluate_natural

        return evaluate_natural(
            model, adapter, splits.val, splits.dims, normalizer, splits.class_names, device, max_len
        )
    return evaluate_conditions(model, adapter, loader, splits.class_names, device)


def extractor_profile_of(splits: DataSplits) -> dict[str, Any]:
    """``Extractors.describe()`` of the features trained on (the engine compares its ``identity``). Data
    not made by the project's extractors (the bundled MOSI features) gets an identity that names it, which
    no engine profile matches."""
    manifest = splits.description.get("store_manifest") or {}
    if "identity" in (manifest.get("extractors") or {}):
        return dict(manifest["extractors"])
    name = str((manifest.get("extractors") or {}).get("name") or splits.description.get("source", "unknown"))
    dims = dict(splits.dims)
    return {"name": name, "identity": {"features": name, "dims": dims}, "dims": dims}


def checkpoint_extra(cfg: TrainConfig, splits: DataSplits, normalizer: Normalizer) -> dict[str, Any]:
    desc = dict(splits.description)
    desc.pop("store_manifest", None)
    meta = FusionMeta(
        model_id=cfg.model_id,
        class_names=tuple(splits.class_names),
        extractor_profile=extractor_profile_of(splits),
        normalization=normalizer.to_dict(),
        licence=cfg.licence,
    )
    return {
        **meta.to_extra(),
        "data_config": to_dict(cfg.data),
        "split": desc,
        "train_config": to_dict(cfg),
        "data_summary": splits.summary(),
    }
