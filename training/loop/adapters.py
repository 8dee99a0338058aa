"""Model adapters: how the trainer builds, runs and scores a model, so the trainer stays model agnostic.

An adapter turns a batch (see ``training.data.dataset``; the trainer adds ``avail`` [B, 3]) into a
model output, a loss dict (with key ``total``) and logits [B, C]. The shipped adapters are listed in
``ADAPTERS`` (imported on first use); each builds a model family of ``models.families``.
``register_adapter`` adds one at run time (a user's own family).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from models.config_io import from_dict
from models.modalities import MODALITIES


class ModelAdapter:
    """Base class. Subclasses set ``model_type`` and ``config_cls`` and implement the four methods."""

    model_type: str = ""
    config_cls: type = object

    def build(self, config: Any) -> nn.Module:
        raise NotImplementedError

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> Any:
        raise NotImplementedError

    def loss(self, model: nn.Module, output: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def logits(self, output: Any) -> torch.Tensor:
        raise NotImplementedError

    def make_config(
        self, model_dict: dict[str, Any], dims: dict[str, int], class_names: tuple[str, ...]
    ) -> Any:
        """Model config from the train config's ``model`` section plus the data's dims and classes.

        Dims / classes written in the section must agree with the data (a mismatch means features from
        another extractor profile), otherwise they are filled in from the data.
        """
        d = dict(model_dict)
        wanted = {f"{m}_dim": int(dims[m]) for m in MODALITIES}
        wanted["num_classes"] = len(class_names)
        for k, v in wanted.items():
            if k in d and int(d[k]) != v:
                raise ValueError(
                    f"model.{k}={d[k]} but the data has {v}: the features come from another "
                    f"extractor profile. Remove model.{k} from the config or fix the data path."
                )
            d[k] = v
        if "class_names" in d and tuple(d["class_names"]) != tuple(class_names):
            raise ValueError(
                f"model.class_names {tuple(d['class_names'])} != data classes {tuple(class_names)}"
            )
        d["class_names"] = list(class_names)
        return from_dict(self.config_cls, d, where="model")


def call_model(model: nn.Module, batch: dict[str, Any], present: bool = False) -> Any:
    """Run a fusion model (CM-ARR or CIDer signature) on a collated batch; ``present`` passes the
    ground-truth presence mask (training only), otherwise the model uses ``avail`` for both."""
    return model(batch["text"], batch["text_mask"], batch["audio"], batch["audio_mask"], batch["video"],
                 batch["video_mask"], batch["avail"], batch["present"] if present else None)


class CMARRAdapter(ModelAdapter):
    """CM-ARR: fused with the [B, 3] availability mask; ``present`` is passed only while training, when
    hidden-but-present modalities give L_rec its ground truth."""

    model_type = "cmarr"

    def __init__(self) -> None:
        from models.cmarr import CMARRConfig

        self.config_cls = CMARRConfig

    def build(self, config: Any) -> nn.Module:
        from models.cmarr import CMARR

        return CMARR(config)

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> Any:
        return call_model(model, batch, present=model.training)

    def loss(self, model: nn.Module, output: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        from models.cmarr import cmarr_loss

        core = model.module if hasattr(model, "module") else model  # unwrap DDP for the loss weights
        return cmarr_loss(core, output, batch["label"])

    def logits(self, output: Any) -> torch.Tensor:
        return output.logits


# A train config's model_type -> (module, adapter class). "cmarr_mssd" trains the cmarr family with
# CIDer's self-distillation.
ADAPTERS: dict[str, tuple[str, str]] = {
    "cmarr": ("training.loop.adapters", "CMARRAdapter"),
    "cider": ("training.loop.mssd", "CIDerAdapter"),
    "cmarr_mssd": ("training.loop.mssd", "CMARRMSSDAdapter"),
}
_REGISTRY: dict[str, ModelAdapter] = {}


def register_adapter(name: str, adapter: ModelAdapter) -> None:
    """Add (or replace) the adapter of ``model_type: name``; its ``model_type`` must be a family of
    ``models.families`` (what its checkpoints record)."""
    from models.families import FAMILIES

    if adapter.model_type not in FAMILIES:
        raise ValueError(f"adapter {name!r} builds model family {adapter.model_type!r}, which "
                         f"models.families does not list ({sorted(FAMILIES)})")
    _REGISTRY[name] = adapter


def get_adapter(name: str) -> ModelAdapter:
    """The adapter of a train config's (or a checkpoint's) ``model_type``."""
    if name not in _REGISTRY and name in ADAPTERS:
        module, cls = ADAPTERS[name]
        register_adapter(name, getattr(importlib.import_module(module), cls)())
    if name not in _REGISTRY:
        known = sorted({*ADAPTERS, *_REGISTRY})
        raise ValueError(f"no model adapter for model_type {name!r}; known: {known}")
    return _REGISTRY[name]


# Ablations of the paper's Table 3, each selected by one override (``ablation=<name>``). Values are
# (model-section overrides, missing-condition mode override or None).
ABLATIONS: dict[str, tuple[dict[str, Any], str | None]] = {
    "none": ({}, None),
    # Full-modality baseline: feature extraction + cross-modal fusion, trained on full data only.
    "baseline": ({"losses": {"alpha": 0.0, "beta": 0.0, "lam": 0.0}}, "full"),
    "wo_udcl": ({"losses": {"alpha": 0.0}}, None),
    "wo_spcl": ({"losses": {"beta": 0.0}}, None),
    "w_point": ({"embedding": "point"}, None),
}


def apply_ablation(model_dict: dict[str, Any], name: str) -> tuple[dict[str, Any], str | None]:
    """(model section with the ablation's changes merged in, missing-mode override or None)."""
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; known: {sorted(ABLATIONS)}")
    changes, mode = ABLATIONS[name]
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in model_dict.items()}
    for k, v in changes.items():
        if isinstance(v, dict):
            out[k] = {**out.get(k, {}), **v}
        else:
            out[k] = v
    return out, mode

