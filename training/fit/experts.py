"""Single-modality experts: what fusion must never do worse than.

* Speech and text heads: a logistic regression on pooled raw features (speech: mean and standard
  deviation of the Whisper encoder frames; text: mean of the token features), class-balanced (text:
  within each corpus, ``balanced_weights``), trained on every training sample that has the modality,
  regularisation chosen and temperature fitted on validation (speech: held-out speakers; text: the
  text-only corpus's dev split, MELD dev). They ship inside the checkpoint
  (``models.fusion_meta.ExpertHead``) and the engine reports their readings next to the fused one.
* The face expert is the pretrained expression model itself: its 4-class reading is read from the
  log-probabilities that the offline profile appends to every face frame (the engine's ``experts.face``
  computes the same thing from the same model). Its temperature is fitted on validation windows pooled
  as the engine pools a window's frames (``fit_face_temperature``).
* ``expert_priors``: the class balance each expert's posterior carries, which the product rule divides
  out (``training.fit.product_rule``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.fusion_meta import ExpertHead
from training.data.dataset import Sample
from training.fit.calibrate import fit_temperature

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


def balanced_weights(corpora: list[str], y: np.ndarray, num_classes: int) -> np.ndarray:
    """Sample weights that balance the classes *within each corpus* (each corpus keeps its share of the
    total): n_corpus / (C * n_corpus,class). A corpus whose words say nothing of the emotion (the same
    scripted sentence in every emotion) then teaches the head to answer with the uniform prior on such
    words, instead of the class balance of the other corpora."""
    corpora_arr = np.asarray(corpora)
    w = np.zeros(len(y))
    for corpus in np.unique(corpora_arr):
        sel = corpora_arr == corpus
        counts = np.bincount(y[sel], minlength=num_classes)
        present = int((counts > 0).sum())
        w[sel] = sel.sum() / (present * counts[y[sel]])
    return w * (len(y) / w.sum())


def fit_head(
    name: str, train: list[Sample], val: list[Sample], num_classes: int, seed: int = 0
) -> FittedHead | None:
    """A calibrated logistic-regression head for ``name`` ("speech" | "text"), or None without data."""
    from sklearn.linear_model import LogisticRegression

    modality, pool = HEADS[name]
    xtr, ytr, itr = pooled(train, modality, pool)
    if name == "text":  # chosen and calibrated on words said for their meaning (MELD dev), not on the
        # scripted, emotionally neutral sentences of the acted speech corpora
        free = [s for s in val if not (s.lengths or {}).get("audio", 0)]
        val = free or val
    xva, yva, _ = pooled(val, modality, pool)
    if len(ytr) == 0 or len(yva) == 0 or len(np.unique(ytr)) < num_classes:
        return None
    # text: balanced within each corpus (scripted sentences -> the prior); speech: balanced over all
    groups = [train[i].corpus for i in itr] if name == "text" else [""] * len(itr)
    weights = balanced_weights(groups, ytr, num_classes)
    # A dimension that is constant over the training set (MiniLM has a few) is left centred, not scaled:
    # dividing float noise by a near-zero deviation would let the regression fit it, and the engine's
    # linear path would multiply any later deviation by millions.
    mean, std = xtr.mean(0), xtr.std(0)
    std = np.where(std < 1e-4 * max(float(np.median(std)), 1e-12), 1.0, std)
    ztr, zva = (xtr - mean) / std, (xva - mean) / std
    best: tuple[float, float, object] | None = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        clf.fit(ztr, ytr, sample_weight=weights)
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
        fh.temperature, uar = fit_face_temperature(val, class_names)
        out["face"] = FittedHead(fh, float("nan"), uar)
    return out


def face_window_logits(samples: list[Sample], class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(log of the face expert's window reading [N, C], labels [N]) for the samples with a face: the
    mean over the window's face frames of the expression model's probabilities, restricted to the
    classes and renormalised, exactly as the engine pools a window (and as CM-ARR's linear face path
    does with its log-mean-exp)."""
    zs, ys = [], []
    for s in samples:
        if (s.lengths or {}).get("video", 0) == 0:
            continue
        feats, valid = s.load()
        p = face_expert_probs(feats["video"], valid["video"], class_names)
        if p is None:
            continue
        zs.append(np.log(np.clip(p, 1e-12, 1.0)))
        ys.append(s.label)
    c = len(class_names)
    return (np.stack(zs), np.asarray(ys, np.int64)) if zs else (np.zeros((0, c)), np.zeros(0, np.int64))


def fit_face_temperature(val: list[Sample], class_names: tuple[str, ...]) -> tuple[float, float]:
    """The face expert's temperature, fitted on validation windows of face frames pooled as the engine
    pools them (FER2013 PublicTest pseudo-videos: each still through the engine's face path in several
    views), and its validation UAR. (1.0, nan) without validation faces."""
    z, y = face_window_logits(val, class_names)
    if len(y) == 0:
        return 1.0, float("nan")
    return fit_temperature([z], [y]), _uar(y, z.argmax(1), len(class_names))


def expert_priors(experts: dict[str, FittedHead], class_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The class balance each expert's posterior carries, per modality: the speech and text heads are
    fitted class-balanced (uniform); the face expert is the expression model, trained on FER2013's own
    class balance (``mini_xception.TRAIN_CLASS_COUNTS``), restricted to ``class_names``."""
    from models.encoders.mini_xception import TRAIN_CLASS_COUNTS

    c = len(class_names)
    out = {fitted.head.modality: np.full(c, 1.0 / c) for fitted in experts.values()}
    if "face" in experts and all(n in FER_TO_CLASS for n in class_names):
        counts = np.array([TRAIN_CLASS_COUNTS[FER_NAMES.index(FER_TO_CLASS[n])] for n in class_names], float)
        out["video"] = counts / counts.sum()
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
