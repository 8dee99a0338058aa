"""Temperature scaling and ECE: the fitted temperature undoes a known over-confidence, and ECE measures it."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import expected_calibration_error
from training.calibrate import ece_report, fit_temperature, softmax


def _calibrated_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true class distribution, and labels drawn from it."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 4))
    p = softmax(z)
    y = np.array([rng.choice(4, p=row) for row in p])
    return z, y


def test_fit_recovers_the_overconfidence_factor() -> None:
    z, y = _calibrated_sample(20000, 0)
    t = fit_temperature([3.0 * z], [y])  # a model 3x too confident
    assert t == pytest.approx(3.0, rel=0.05)
    rep = ece_report(3.0 * z, y, t)
    assert rep["ece_before"] > 0.1 and rep["ece_after"] < 0.02
    assert rep["accuracy"] == pytest.approx((z.argmax(1) == y).mean())  # T never changes a prediction


def test_sets_of_different_size_weigh_alike() -> None:
    big, yb = _calibrated_sample(5000, 1)
    small, ys = _calibrated_sample(200, 2)
    t_big = fit_temperature([big * 0.5], [yb])
    t_both = fit_temperature([big * 0.5, small * 4.0], [yb, ys])
    assert t_big == pytest.approx(0.5, rel=0.1) and t_both > 1.0  # the small set still pulls its weight


def test_ece_of_known_cases() -> None:
    y = np.array([0, 1, 0, 1])
    perfect = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, y) == pytest.approx(0.0)
    coin = np.array([[0.9, 0.1]] * 4)  # 90% sure of class 0, right half the time
    assert expected_calibration_error(coin, y) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        fit_temperature([], [])
