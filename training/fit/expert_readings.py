"""Each single-modality expert's reading of the samples of an evaluation set, computed from the raw
features as the engine computes it (the checkpoint's speech and text heads, the face model's window
reading with the face temperature)."""

from __future__ import annotations

import numpy as np

from models.fusion_meta import FusionMeta
from models.modalities import MODALITIES
from training.data.dataset import FeatureDataset
from training.fit.experts import face_expert_probs


def _raw(ds: FeatureDataset, i: int) -> dict[str, np.ndarray | None]:
    """Un-normalised valid frames of item ``i`` per modality (None when it has none)."""
    item = ds[i]
    out: dict[str, np.ndarray | None] = {}
    for m in MODALITIES:
        v = item[f"{m}_mask"].numpy()
        if not v.any():
            out[m] = None
            continue
        mean = np.asarray(ds.normalizer.mean[m], np.float32)
        std = np.asarray(ds.normalizer.std[m], np.float32)
        out[m] = item[m].numpy()[v] * std + mean
    return out


def expert_probs(ds: FeatureDataset, cond: str, meta: FusionMeta) -> dict[str, np.ndarray]:
    """Each single-modality expert's probabilities [N, C] on the samples of ``ds`` (rows with no reading
    are uniform) for the modalities that ``cond`` makes available."""
    names = meta.class_names
    c = len(names)
    out: dict[str, list[np.ndarray]] = {}
    for i in range(len(ds)):
        raw = _raw(ds, i)
        for name, head in meta.experts.items():
            if head.modality[0] in cond:
                x = raw[head.modality]
                out.setdefault(name, []).append(head(x) if x is not None else np.full(c, 1.0 / c))
        if "v" in cond:
            x = raw["video"]
            p = face_expert_probs(x, np.ones(len(x), bool), names) if x is not None else None
            p = meta.calibrate_face(p) if p is not None else np.full(c, 1.0 / c)
            out.setdefault("face", []).append(p)
    return {k: np.stack(v) for k, v in out.items()}
