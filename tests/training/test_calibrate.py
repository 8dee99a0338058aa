"""Temperature scaling and ECE: the fitted temperature undoes a known over-confidence, and ECE measures it."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import calibration_check, expected_calibration_error
from training.fit.calibrate import ece_report, fit_temperature, softmax


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


def test_a_calibrated_model_on_few_samples_reads_a_high_ece_that_the_floor_explains() -> None:
    z, y = _calibrated_sample(61, 3)  # the size of one held-out speech corpus's validation speakers
    check = calibration_check(softmax(z), y)
    # ECE is biased upward at this size: the calibrated model itself reads far above 0.05, and the floor
    # (the same probabilities with labels drawn from them) says so; it is no evidence of miscalibration.
    assert check.ece > 0.05 and check.floor > 0.05 and check.p_calibrated > 0.05
    assert check.floor <= check.floor_p95 and check.n == 61
    big_z, big_y = _calibrated_sample(5000, 4)
    assert calibration_check(softmax(big_z), big_y).floor < 0.25 * check.floor  # shrinks with n


def test_an_overconfident_model_is_told_apart_from_sampling_noise() -> None:
    z, y = _calibrated_sample(400, 5)
    honest = calibration_check(softmax(z), y)
    sharp = calibration_check(softmax(4.0 * z), y)  # 4x too confident
    assert honest.p_calibrated > 0.05 and honest.ece < honest.floor_p95
    assert sharp.p_calibrated < 0.01 and sharp.ece > sharp.floor_p95
    rep = ece_report(4.0 * z, y, 4.0)  # the report carries the same check after the temperature
    assert rep["ece_after"] == pytest.approx(honest.ece) and rep["ece_floor"] == pytest.approx(honest.floor)
