"""Single-modality experts: what fusion must never do worse than.

* Speech and text heads: a logistic regression on pooled raw features (speech: mean and standard
  deviation of the Whisper encoder frames; text: mean of the token features), class-balanced, trained on
  every training sample that has the modality, regularisation chosen on validation, temperature-scaled
  on validation. They ship inside the checkpoint (``models.fusion_meta.ExpertHead``) and the engine
  reports their readings next to the fused one.
* The face expert is the pretrained expression model itself: its 4-class reading is read from the
  log-probabilities that the offline profile appends to every face frame (the engine's ``experts.face``
  computes the same thing from the same model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.fusion_meta import ExpertHead

from .calibrate import fit_temperature
from .data.dataset import Sample

HEADS = {"speech": ("audio", "mean_std"), "text": ("text", "mean")}
C_GRID = (0.01, 0.1, 1.0)
FER_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # mini-Xception order
FER_TO_CLASS = {"ang": "angry", "hap": "happy", "neu": "neutral", "sad": "sad"}


def pooled(samples: list[Sample], modality: str, pool: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(X [N, P], y [N], indices into ``samples``) for the samples that have ``modality``."""
    xs, ys, idx = [], [], []
    for i, s in enumerate(samples):
        if (s.lengths or {}).get(modality, 0) == 0:
            continue
        feats, valid = s.load()
        x = feats[modality][valid[modality]]
        if len(x) == 0:
            continue
        xs.append(ExpertHead.pool_features(x, pool))
        ys.append(s.label)
        idx.append(i)
    if not xs:
        return np.zeros((0, 0)), np.zeros(0, np.int64), []
    return np.stack(xs), np.asarray(ys, np.int64), idx


@dataclass
class FittedHead:
    head: ExpertHead
    c: float
    val_uar: float


def _uar(y: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    rec = [np.mean(pred[y == c] == c) for c in range(num_classes) if np.any(y == c)]
    return float(np.mean(rec)) if rec else float("nan")


def fit_head(
    name: str, train: list[Sample], val: list[Sample], num_classes: int, seed: int = 0
) -> FittedHead | None:
    """A calibrated logistic-regression head for ``name`` ("speech" | "text"), or None without data."""
    from sklearn.linear_model import LogisticRegression

    modality, pool = HEADS[name]
    xtr, ytr, _ = pooled(train, modality, pool)
    xva, yva, _ = pooled(val, modality, pool)
    if len(ytr) == 0 or len(yva) == 0 or len(np.unique(ytr)) < num_classes:
        return None
    # A dimension that is constant over the training set (MiniLM has a few) is left centred, not scaled:
    # dividing float noise by a near-zero deviation would let the regression fit it, and the engine's
    # linear path would multiply any later deviation by millions.
    mean, std = xtr.mean(0), xtr.std(0)
    std = np.where(std < 1e-4 * max(float(np.median(std)), 1e-12), 1.0, std)
    ztr, zva = (xtr - mean) / std, (xva - mean) / std
    best: tuple[float, float, object] | None = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced", random_state=seed)
        clf.fit(ztr, ytr)
        score = _uar(yva, clf.predict(zva), num_classes)
        if best is None or score > best[0]:
            best = (score, c, clf)
    assert best is not None
    score, c, clf = best
    head = ExpertHead(modality, pool, mean, std, np.asarray(clf.coef_), np.asarray(clf.intercept_))
    head.temperature = fit_temperature([head.logits(xva)], [yva])
    return FittedHead(head, float(c), score)


def face_expert_probs(
    video: np.ndarray, valid: np.ndarray, class_names: tuple[str, ...]
) -> np.ndarray | None:
    """The expression model's own reading from frames whose last 7 dims are its log-probabilities:
    mean of the per-frame probabilities over frames with a face, restricted to the classes that exist
    in both label sets and renormalised (the engine's ``expert_reading``). None when no face."""
    x = np.asarray(video)[np.asarray(valid, bool)]
    if len(x) == 0 or x.shape[1] < len(FER_NAMES):
        return None
    probs = np.exp(x[:, -len(FER_NAMES) :]).mean(0)
    vals = np.array(
        [probs[FER_NAMES.index(FER_TO_CLASS[c])] if c in FER_TO_CLASS else 0.0 for c in class_names]
    )
    return vals / vals.sum() if vals.sum() > 0 else None


def face_head(dims: dict[str, int], class_names: tuple[str, ...]) -> ExpertHead | None:
    """The face expert as a linear head on pooled video features: the mean over frames of the expression
    model's log-probability of each class (the last 7 feature dims), i.e. a product of the frames'
    readings. None when the profile appends no log-probabilities."""
    d = dims["video"]
    if d < len(FER_NAMES) or any(c not in FER_TO_CLASS for c in class_names):
        return None
    first = d - len(FER_NAMES)
    w = np.zeros((len(class_names), 2 * d))
    for i, c in enumerate(class_names):
        w[i, first + FER_NAMES.index(FER_TO_CLASS[c])] = 1.0
    return ExpertHead("video", "mean_std", np.zeros(2 * d), np.ones(2 * d), w, np.zeros(len(class_names)))


def skip_weights(head: ExpertHead, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An expert head on pooled raw features, rewritten for the model's pooled_skip path, which reads
    [mean, std] of features already standardised as (x - mean) / std. Calibrated: divided by the head's
    temperature. Returns (weight [C, 2D], bias [C])."""
    d = len(mean)
    w_raw = head.weight / head.temperature  # [C, P] on z = (pool(x) - head.mean) / head.std
    b = head.bias / head.temperature
    w = np.zeros((w_raw.shape[0], 2 * d))
    # mean(x) = mean(xn) * std + mean  ->  z_mean = (mean(xn) * std + mean - m) / s
    m, s = head.mean[:d], head.std[:d]
    w[:, :d] = w_raw[:, :d] * (std / s)
    b = b + w_raw[:, :d] @ ((mean - m) / s)
    if head.pool == "mean_std":  # std(x) = std(xn) * std  ->  z_std = (std(xn) * std - m') / s'
        m2, s2 = head.mean[d:], head.std[d:]
        w[:, d:] = w_raw[:, d:] * (std / s2)
        b = b - w_raw[:, d:] @ (m2 / s2)
    return w, b


def fit_experts(
    train: list[Sample], val: list[Sample], dims: dict[str, int], class_names: tuple[str, ...]
) -> dict[str, FittedHead]:
    """The speech and text heads (fitted on train, chosen and calibrated on validation) and the face head."""
    out: dict[str, FittedHead] = {}
    for name in ("speech", "text"):
        fitted = fit_head(name, train, val, len(class_names))
        if fitted is not None:
            out[name] = fitted
    fh = face_head(dims, class_names)
    if fh is not None:
        out["face"] = FittedHead(fh, float("nan"), float("nan"))
    return out


def init_skip_from_experts(model: Any, experts: dict[str, FittedHead], normalizer: Any) -> None:
    """Load the experts into CM-ARR's pooled_skip path (frozen) and zero the attention path's last layer:
    training starts from the product of the calibrated experts of the available modalities, and the
    attention path learns what they miss (cross-modal cues, reconstruction of missing modalities)."""
    import torch

    if not getattr(model.config, "pooled_skip", False):
        raise ValueError("skip_init=experts needs model.pooled_skip: true")
    with torch.no_grad():
        for lin in model.skip.values():
            lin.weight.zero_()
            lin.bias.zero_()
        for fitted in experts.values():
            h = fitted.head
            mean = np.asarray(normalizer.mean[h.modality], np.float64)
            std = np.asarray(normalizer.std[h.modality], np.float64)
            w, b = skip_weights(h, mean, std)
            lin = model.skip[h.modality]
            lin.weight.copy_(torch.as_tensor(w, dtype=lin.weight.dtype))
            lin.bias.copy_(torch.as_tensor(b, dtype=lin.bias.dtype))
        for p in model.skip.parameters():
            p.requires_grad_(False)
        last = model.head[-1]
        last.weight.zero_()
        last.bias.zero_()
