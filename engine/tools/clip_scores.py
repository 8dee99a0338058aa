"""Clip-level results of ``python -m engine.evaluate``: the clip rule over a clip's events, and WAR/UAR
per condition, per expert and as a confusion matrix over the clips."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from engine.frames import EmotionEvent
from models.metrics import classification_metrics
from models.modalities import CONDITIONS


@dataclass
class ClipResult:
    name: str
    label: str
    counted: bool
    pred: str | None
    probs: dict[str, float] | None
    events: int
    condition: str
    error: str | None
    seconds: float
    warnings: list[str] = field(default_factory=list)  # failures after media was decoded, engine errors
    # Single-modality experts (face model, speech and text heads): the same clip rule over the events
    # that carry that expert's reading; absent when no event had one.
    experts: dict[str, str] = field(default_factory=dict)


def clip_prediction(
    events: Sequence[EmotionEvent], class_names: Sequence[str]
) -> tuple[str | None, dict[str, float] | None]:
    """The clip rule: argmax of the mean of ``probs`` over the events that have them."""
    rows = [[float(e.probs.get(c, 0.0)) for c in class_names] for e in events if e.probs]
    if not rows:
        return None, None
    mean = np.mean(np.asarray(rows, np.float64), axis=0)
    return class_names[int(np.argmax(mean))], {c: float(p) for c, p in zip(class_names, mean, strict=True)}


def clip_experts(events: Sequence[EmotionEvent], class_names: Sequence[str]) -> dict[str, str]:
    """Each expert's clip prediction: argmax of the mean of its readings over the events that have one."""
    rows: dict[str, list[list[float]]] = {}
    for e in events:
        for name, r in e.experts.items():
            rows.setdefault(name, []).append([float(r.probs.get(c, 0.0)) for c in class_names])
    return {k: class_names[int(np.argmax(np.mean(np.asarray(v), axis=0)))] for k, v in sorted(rows.items())}


def clip_condition(events: Sequence[EmotionEvent]) -> str:
    """The availability set most frequent among the events with probabilities (ties: the larger set)."""
    counts = Counter(e.condition for e in events if e.probs and e.condition)
    if not counts:
        return ""
    return max(counts, key=lambda c: (counts[c], len(c)))


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _metrics(rows: Sequence[ClipResult], class_names: Sequence[str]) -> Any:
    """Metrics over counted clips; a missing prediction is an extra, never-true class (always wrong)."""
    c = len(class_names)
    y = np.asarray([class_names.index(r.label) for r in rows], np.int64)
    p = np.asarray([c if r.pred is None else class_names.index(r.pred) for r in rows], np.int64)
    return classification_metrics(y, p, c + 1)


def scores(rows: Sequence[ClipResult], class_names: Sequence[str]) -> dict[str, Any]:
    if not rows:
        return {"war": None, "uar": None, "n": 0}
    m = _metrics(rows, class_names)
    return {"war": _finite(m.war), "uar": _finite(m.uar), "n": m.n}


def summarise(results: Sequence[ClipResult], class_names: Sequence[str]) -> dict[str, Any]:
    """overall, by_condition and confusion over the counted clips."""
    counted = [r for r in results if r.counted]
    c = len(class_names)
    overall = scores(counted, class_names)
    cm = np.zeros((c, c + 1), np.int64)
    if counted:
        m = _metrics(counted, class_names)
        overall["per_class_recall"] = {
            n: _finite(r) for n, r in zip(class_names, m.per_class_recall[:c], strict=True)
        }
        cm = np.asarray(m.confusion, np.int64)[:c]
    order = [*CONDITIONS, ""]
    conditions = sorted({r.condition for r in counted}, key=lambda k: order.index(k) if k in order else 99)
    by_condition = {k: scores([r for r in counted if r.condition == k], class_names) for k in conditions}
    experts = {}
    for name in sorted({k for r in counted for k in r.experts}):
        have = [r for r in counted if name in r.experts]
        as_pred = [replace(r, pred=r.experts[name]) for r in have]
        experts[name] = {
            **scores(as_pred, class_names),
            "fused_on_same_clips": scores(have, class_names),
            "by_condition": {
                k: {
                    "expert": scores([r for r in as_pred if r.condition == k], class_names),
                    "fused": scores([r for r in have if r.condition == k], class_names),
                }
                for k in conditions
                if any(r.condition == k for r in have)
            },
        }
    return {
        "overall": overall,
        "by_condition": by_condition,
        "experts": experts,
        "confusion": {
            "labels": list(class_names),
            "matrix": cm[:, :c].tolist(),  # rows: true class, columns: predicted class
            "no_prediction": cm[:, c].tolist(),  # per true class: clips without any event probabilities
        },
    }
