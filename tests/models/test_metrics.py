from __future__ import annotations

import math

import numpy as np
import pytest

from models.metrics import classification_metrics, confusion_matrix


def test_war_uar_f1_by_hand() -> None:
    # 6 of class 0 (4 right), 2 of class 1 (1 right), 2 of class 2 (2 right).
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    p = np.array([0, 0, 0, 0, 1, 2, 1, 0, 2, 2])
    m = classification_metrics(y, p, 3)
    assert m.war == pytest.approx(7 / 10)
    assert m.uar == pytest.approx((4 / 6 + 1 / 2 + 2 / 2) / 3)
    assert m.per_class_recall == pytest.approx([4 / 6, 0.5, 1.0])
    assert m.confusion == [[4, 1, 1], [1, 1, 0], [0, 0, 2]]
    f1 = [2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6), 2 * 0.5 * 0.5 / 1.0, 2 * (2 / 3) * 1.0 / (2 / 3 + 1.0)]
    assert m.f1_macro == pytest.approx(np.mean(f1))
    assert m.f1_weighted == pytest.approx((6 * f1[0] + 2 * f1[1] + 2 * f1[2]) / 10)


def test_absent_class_is_left_out_of_uar() -> None:
    m = classification_metrics(np.array([0, 0, 1]), np.array([0, 2, 1]), 3)
    assert math.isnan(m.per_class_recall[2])
    assert m.uar == pytest.approx((0.5 + 1.0) / 2)
    assert m.to_dict()["per_class_recall"][2] is None


def test_confusion_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="labels must lie"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
