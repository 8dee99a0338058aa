"""Temperature scaling (Guo et al., 2017): one scalar T > 0 fitted on validation logits so that
softmax(logits / T) is calibrated. It never changes a prediction (argmax is invariant to T).

Evaluation sets of very different sizes are pooled with equal total weight each, so a large corpus
(FER2013, MELD) does not decide the temperature of a small one (RAVDESS) alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar

from models.metrics import calibration_check, expected_calibration_error


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(z))


def fit_temperature(
    logits: Sequence[np.ndarray], labels: Sequence[np.ndarray], bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """T minimising the mean (over sets) of each set's mean negative log-likelihood."""
    sets = [(np.asarray(z, np.float64), np.asarray(y, np.int64)) for z, y in zip(logits, labels, strict=True)]
    sets = [(z, y) for z, y in sets if len(y)]
    if not sets:
        raise ValueError("temperature scaling needs at least one non-empty validation set")

    def nll(log_t: float) -> float:
        t = np.exp(log_t)
        return float(np.mean([-log_softmax(z / t)[np.arange(len(y)), y].mean() for z, y in sets]))

    res = minimize_scalar(nll, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded")
    return float(np.exp(res.x))


def ece_entry(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """ECE with what sampling alone gives at this size (``models.metrics.calibration_check``), rounded."""
    c = calibration_check(probs, y)
    return {"ece": round(c.ece, 4), "ece_floor": round(c.floor, 4), "ece_floor_p95": round(c.floor_p95, 4),
            "p_calibrated": round(c.p_calibrated, 3)}


def ece_report(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, float]:
    """ECE before (T = 1) and after temperature scaling, and the accuracy (unchanged by T). Also, after
    the temperature, the ECE a perfectly calibrated model with the same probabilities shows at this size
    (``ece_floor``, its 95th percentile ``ece_floor_p95``) and the share of such models that read at
    least the measured ECE (``p_calibrated``): ``models.metrics.calibration_check``."""
    z, y = np.asarray(logits, np.float64), np.asarray(labels, np.int64)
    check = calibration_check(softmax(z / temperature), y)
    return {
        "n": int(len(y)),
        "ece_before": expected_calibration_error(softmax(z), y),
        "ece_after": check.ece,
        "ece_floor": check.floor,
        "ece_floor_p95": check.floor_p95,
        "p_calibrated": check.p_calibrated,
        "accuracy": float((z.argmax(1) == y).mean()) if len(y) else float("nan"),
    }
