"""What a fusion checkpoint must carry for the engine to use it, in one typed record.

The trainer writes it (``FusionMeta.to_extra``) into the checkpoint's ``extra`` metadata and the engine
reads it back (``FusionMeta.from_extra``), so both sides share one layout:

- ``model_id``: a name for the trained model (events report ``<model_id>:<first 12 hex of the file hash>``);
- ``class_names``: the output classes, in logit order;
- ``extractor_profile``: ``Extractors.describe()`` of the extractors that produced the training features
  (its ``identity`` section is what the engine compares with its own extractors);
- ``normalization``: per modality ``{"mean": [D], "std": [D]}``, applied as (x - mean) / std;
- ``temperature``: logits are divided by it before the softmax (fitted on validation; 1.0 = uncalibrated);
- ``experts``: optional single-modality heads (``ExpertHead``) that give each modality's own reading;
- ``face_temperature``: the face expert's calibration (its window reading is softmax(log p / T)), fitted
  on validation windows pooled as the engine pools them;
- ``fusion_rule``: how the model combines its experts by default ("product" | "learned"; "" when the
  model family has no such choice);
- ``licence``: the licence the weights inherit from their training data.

Pure numpy; no engine or training imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .modalities import MODALITIES

META_VERSION = 1
POOLS = ("mean", "mean_std")


class CheckpointMetaError(ValueError):
    """A checkpoint lacks, or has malformed, metadata that the engine needs."""


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class ExpertHead:
    """A linear single-modality classifier on pooled features: probs = softmax((W z + b) / T) with
    z = (pool(x) - mean) / std and pool = mean over frames ("mean") or [mean, std] ("mean_std")."""

    modality: str
    pool: str
    mean: np.ndarray  # [P]
    std: np.ndarray  # [P]
    weight: np.ndarray  # [C, P]
    bias: np.ndarray  # [C]
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise CheckpointMetaError(f"expert modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.pool not in POOLS:
            raise CheckpointMetaError(f"expert pool must be one of {POOLS}, got {self.pool!r}")
        p = self.weight.shape[1]
        if self.mean.shape != (p,) or self.std.shape != (p,) or self.bias.shape != (self.weight.shape[0],):
            raise CheckpointMetaError(f"expert {self.modality} head has inconsistent shapes")
        if self.temperature <= 0:
            raise CheckpointMetaError(f"expert temperature must be > 0, got {self.temperature}")

    @staticmethod
    def pool_features(x: np.ndarray, pool: str) -> np.ndarray:
        """[L, D] frames -> [P] pooled vector (L >= 1)."""
        x = np.asarray(x, np.float64)
        return x.mean(0) if pool == "mean" else np.concatenate([x.mean(0), x.std(0)])

    def logits(self, pooled: np.ndarray) -> np.ndarray:
        """[N, P] pooled features -> [N, C] uncalibrated logits."""
        z = (np.asarray(pooled, np.float64) - self.mean) / self.std
        return z @ self.weight.T + self.bias

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """[L, D] frames of one window -> calibrated probabilities [C]."""
        return _softmax(self.logits(self.pool_features(x, self.pool)[None]) / self.temperature)[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "pool": self.pool,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "weight": self.weight.tolist(),
            "bias": self.bias.tolist(),
            "temperature": float(self.temperature),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExpertHead:
        try:
            return cls(
                d["modality"],
                d["pool"],
                np.asarray(d["mean"], np.float64),
                np.maximum(np.asarray(d["std"], np.float64), 1e-8),
                np.asarray(d["weight"], np.float64),
                np.asarray(d["bias"], np.float64),
                float(d.get("temperature", 1.0)),
            )
        except (KeyError, TypeError, IndexError) as e:
            raise CheckpointMetaError(f"malformed expert head: {type(e).__name__}: {e}") from e


@dataclass
class FusionMeta:
    model_id: str
    class_names: tuple[str, ...]
    extractor_profile: dict[str, Any]
    normalization: dict[str, dict[str, list[float]]]
    temperature: float = 1.0
    experts: dict[str, ExpertHead] = field(default_factory=dict)  # name ("speech", "text") -> head
    licence: str = ""
    face_temperature: float = 1.0
    fusion_rule: str = ""

    def __post_init__(self) -> None:
        if not self.model_id or ":" in self.model_id:
            raise CheckpointMetaError(f"model_id must be a non-empty name without ':', got {self.model_id!r}")
        if len(self.class_names) < 2:
            raise CheckpointMetaError(f"class_names must list >= 2 classes, got {self.class_names!r}")
        if "identity" not in self.extractor_profile:
            raise CheckpointMetaError(
                "extractor_profile lacks its 'identity' section (it must be Extractors.describe())"
            )
        for name in ("temperature", "face_temperature"):
            t = getattr(self, name)
            if not np.isfinite(t) or t <= 0:
                raise CheckpointMetaError(f"{name} must be a positive number, got {t}")
        for m in MODALITIES:
            st = self.normalization.get(m)
            if not isinstance(st, dict) or "mean" not in st or "std" not in st:
                raise CheckpointMetaError(
                    f"normalization must map every modality to {{'mean': [D], 'std': [D]}}; {m!r} is "
                    f"{'missing' if st is None else 'malformed'}"
                )
            if len(st["mean"]) != len(st["std"]):
                raise CheckpointMetaError(f"normalization[{m!r}] mean and std differ in length")

    @property
    def dims(self) -> dict[str, int]:
        return {m: len(self.normalization[m]["mean"]) for m in MODALITIES}

    def stats(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """modality -> (mean [D], std [D]) as float32, std floored at 1e-6."""
        return {
            m: (
                np.asarray(self.normalization[m]["mean"], np.float32),
                np.maximum(np.asarray(self.normalization[m]["std"], np.float32), 1e-6),
            )
            for m in MODALITIES
        }

    def to_extra(self) -> dict[str, Any]:
        return {
            "fusion_meta_version": META_VERSION,
            "model_id": self.model_id,
            "class_names": list(self.class_names),
            "extractor_profile": self.extractor_profile,
            "normalization": self.normalization,
            "temperature": float(self.temperature),
            "experts": {k: v.to_dict() for k, v in self.experts.items()},
            "licence": self.licence,
            "face_temperature": float(self.face_temperature),
            "fusion_rule": self.fusion_rule,
        }

    @classmethod
    def from_extra(cls, extra: dict[str, Any], source: str = "checkpoint") -> FusionMeta:
        """Read and validate; every problem is a CheckpointMetaError naming what is wrong."""
        version = extra.get("fusion_meta_version")
        if version != META_VERSION:
            raise CheckpointMetaError(
                f"{source} has fusion metadata version {version!r}, this code reads {META_VERSION}: it was "
                "not written by this project's trainer (python -m training.train). Retrain, or use the "
                "bundled model."
            )
        missing = [
            k for k in ("model_id", "class_names", "extractor_profile", "normalization") if k not in extra
        ]
        if missing:
            raise CheckpointMetaError(f"{source} metadata lacks {missing}")
        return cls(
            model_id=str(extra["model_id"]),
            class_names=tuple(extra["class_names"]),
            extractor_profile=dict(extra["extractor_profile"]),
            normalization=dict(extra["normalization"]),
            temperature=float(extra.get("temperature", 1.0)),
            experts={k: ExpertHead.from_dict(v) for k, v in (extra.get("experts") or {}).items()},
            licence=str(extra.get("licence", "")),
            face_temperature=float(extra.get("face_temperature", 1.0)),
            fusion_rule=str(extra.get("fusion_rule", "")),
        )

    def calibrate_face(self, probs: np.ndarray) -> np.ndarray:
        """The face expert's window reading [..., C] (mean frame probabilities) -> calibrated."""
        return calibrate_probs(probs, self.face_temperature)


def calibrate_probs(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of probabilities [..., C]: softmax(log p / T) (unchanged for T = 1)."""
    if temperature == 1.0:
        return probs
    return _softmax(np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)) / temperature)
