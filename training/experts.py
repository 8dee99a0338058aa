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
    mean, std = xtr.mean(0), np.maximum(xtr.std(0), 1e-8)
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


def face_expert_probs(video: np.ndarray, valid: np.ndarray, class_names: tuple[str, ...]) -> np.ndarray | None:
    """The expression model's own reading from frames whose last 7 dims are its log-probabilities:
    mean of the per-frame probabilities over frames with a face, restricted to the classes that exist
    in both label sets and renormalised (the engine's ``expert_reading``). None when no face."""
    x = np.asarray(video)[np.asarray(valid, bool)]
    if len(x) == 0 or x.shape[1] < len(FER_NAMES):
        return None
    probs = np.exp(x[:, -len(FER_NAMES) :]).mean(0)
    vals = np.array([probs[FER_NAMES.index(FER_TO_CLASS[c])] if c in FER_TO_CLASS else 0.0 for c in class_names])
    return vals / vals.sum() if vals.sum() > 0 else None
