"""Evaluation under every availability condition: WAR / UAR / F1 / per-class recall / confusion.

The report holds each of the six missing conditions and full, plus two summaries of the six, both
labelled: ``mean_missing`` (the mean of the six per-condition metrics, the CM-ARR paper's "Avg.") and
``pooled_missing`` (metrics over the pooled 6x test set, as MMIN-style papers report). A checkpoint on
its data: ``python -m training.evaluate`` (``training.evaluation.checkpoint_eval``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.metrics import Metrics, classification_metrics
from models.modalities import CONDITIONS, MISSING_CONDITIONS
from training.data.dataset import batch_to
from training.loop.adapters import ModelAdapter

SUMMARY_KEYS = ("war", "uar", "f1_macro", "f1_weighted")


@torch.no_grad()
def predict_conditions(
    model: torch.nn.Module,
    adapter: ModelAdapter,
    loader: Iterable[dict[str, Any]],
    masks: list[tuple[int, int, int]],
    device: torch.device | str,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Run ``model`` on every batch under each availability mask.

    All masks go through ONE forward pass per batch (the batch is repeated once per mask, [M*B, ...]),
    which costs far less than M passes when per-operator overhead dominates (small models, CPU).
    Returns (labels [N], predictions per mask [N], probabilities per mask [N, C]).
    """
    was_training = model.training
    model.eval()
    n_masks = len(masks)
    avail_rows = torch.tensor(masks, dtype=torch.float32, device=device)  # [M, 3]
    ys: list[torch.Tensor] = []
    probs: list[list[torch.Tensor]] = [[] for _ in masks]
    for batch in loader:
        batch = batch_to(batch, device)
        b = batch["label"].shape[0]
        big = {
            k: (v.repeat(n_masks, *([1] * (v.dim() - 1))) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()
        }
        big["avail"] = avail_rows.repeat_interleave(b, dim=0)  # mask j covers rows [j*B, (j+1)*B)
        p = torch.softmax(adapter.logits(adapter.forward(model, big)).float(), dim=-1).cpu()
        for j in range(n_masks):
            probs[j].append(p[j * b : (j + 1) * b])
        ys.append(batch["label"].cpu())
    model.train(was_training)
    y = torch.cat(ys).numpy() if ys else np.zeros(0, np.int64)
    pr = [torch.cat(pj).numpy() for pj in probs] if ys else [np.zeros((0, 0), np.float32) for _ in masks]
    return y, [q.argmax(axis=1) for q in pr], pr


def predict(
    model: torch.nn.Module,
    adapter: ModelAdapter,
    loader: Iterable[dict[str, Any]],
    mask: tuple[int, int, int],
    device: torch.device | str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels [N], predictions [N], probabilities [N, C]) under one availability mask."""
    y, preds, probs = predict_conditions(model, adapter, loader, [mask], device)
    return y, preds[0], probs[0]


@dataclass
class ConditionReport:
    class_names: tuple[str, ...]
    per_condition: dict[str, Metrics]  # "t", "a", "v", "tv", "av", "ta", "tav"
    pooled_missing: Metrics | None = None  # metrics over the six missing conditions' predictions pooled
    extra: dict[str, Any] = field(default_factory=dict)

    def mean_missing(self) -> dict[str, float]:
        """Mean over the six missing conditions of each summary metric (the paper's "Avg.")."""
        names = [c for c in MISSING_CONDITIONS if c in self.per_condition]
        return (
            {k: float(np.mean([getattr(self.per_condition[c], k) for c in names])) for k in SUMMARY_KEYS}
            if names
            else {}
        )

    def mean_all(self) -> dict[str, float]:
        return {k: float(np.mean([getattr(m, k) for m in self.per_condition.values()])) for k in SUMMARY_KEYS}

    def selection_value(self, name: str) -> float:
        if name == "uar_full":
            return self.per_condition["tav"].uar
        if name == "war_full":
            return self.per_condition["tav"].war
        if name == "uar_mean_all":
            return self.mean_all()["uar"]
        if name == "uar_mean_missing":
            return self.mean_missing()["uar"]
        raise ValueError(f"unknown selection metric {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_names": list(self.class_names),
            "conditions": {c: m.to_dict() for c, m in self.per_condition.items()},
            "mean_missing": {
                "definition": "mean of the six missing-condition metrics (CM-ARR 'Avg.')",
                **self.mean_missing(),
            },
            "pooled_missing": {
                "definition": "metrics on the pooled 6x set: every sample under each of the six "
                "missing conditions (MMIN style)",
                **(self.pooled_missing.to_dict() if self.pooled_missing else {}),
            },
            "mean_all": {"definition": "mean over the six missing conditions and full", **self.mean_all()},
            **self.extra,
        }


def evaluate_conditions(
    model: torch.nn.Module,
    adapter: ModelAdapter,
    loader: Iterable[dict[str, Any]],
    class_names: tuple[str, ...],
    device: torch.device | str,
    conditions: tuple[str, ...] = tuple(CONDITIONS),
) -> ConditionReport:
    """Metrics for each named condition, and the pooled 6x set when all six missing ones are included."""
    per: dict[str, Metrics] = {}
    pooled_true, pooled_pred = [], []
    c = len(class_names)
    y, preds, _ = predict_conditions(model, adapter, loader, [CONDITIONS[n] for n in conditions], device)
    keep = y >= 0  # unlabelled samples are not scored
    for name, pred in zip(conditions, preds, strict=True):
        per[name] = classification_metrics(y[keep], pred[keep], c)
        if name in MISSING_CONDITIONS:
            pooled_true.append(y[keep])
            pooled_pred.append(pred[keep])
    pooled = None
    if all(n in conditions for n in MISSING_CONDITIONS):
        pooled = classification_metrics(np.concatenate(pooled_true), np.concatenate(pooled_pred), c)
    return ConditionReport(class_names=tuple(class_names), per_condition=per, pooled_missing=pooled)
