"""A finished checkpoint scored on a split as it would be read: per corpus and availability condition,
the fused reading (WAR / UAR / confusion, ECE before and after its temperature) next to every
single-modality expert in the same condition ("fused - best expert" must never be negative), and, for a
model with a choice of fusion rule, the UAR and WAR under each rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoint import load_fusion_checkpoint
from models.cmarr import FUSION_RULES
from models.metrics import classification_metrics
from training.data.dataset import DataSplits, Normalizer
from training.evaluation.natural import NaturalReport, evaluate_natural
from training.fit.calibrate import ece_report, softmax
from training.fit.expert_readings import expert_probs
from training.loop.adapters import get_adapter


def natural_test_report(
    path: str | Path, splits: DataSplits, samples: list, device: Any, max_len: dict[str, int]
) -> dict[str, Any]:
    """Per (corpus, condition): fused WAR/UAR/confusion, ECE before/after, every expert, the best one;
    for a model with a choice of fusion rule, also the UAR and WAR under each rule (``rules``)."""
    ck = load_fusion_checkpoint(path)
    meta = ck.meta
    norm = Normalizer.from_dict(meta.normalization)
    model = ck.model.to(device)
    adapter = get_adapter(ck.model_type)
    by_rule: dict[str, NaturalReport] = {}
    if getattr(model.config, "pooled_skip", False):
        default = model.fusion_rule
        for rule in FUSION_RULES:
            model.set_fusion_rule(rule)
            by_rule[rule] = evaluate_natural(
                model, adapter, samples, splits.dims, norm, splits.class_names, device, max_len
            )
        model.set_fusion_rule(default)
    # the default rule's report is one of the rules' (scored once)
    if by_rule:
        rep = by_rule[default]
    else:
        rep = evaluate_natural(
            model, adapter, samples, splits.dims, norm, splits.class_names, device, max_len
        )
    entries: dict[str, Any] = {}
    for key, sc in rep.scored.items():
        m = rep.per_condition[key]
        cond = key.split(".")[-1]
        e: dict[str, Any] = {**m.to_dict(), **ece_report(sc.logits, sc.y, meta.temperature)}
        if by_rule:
            e["rules"] = {r: {"uar": br.per_condition[key].uar, "war": br.per_condition[key].war}
                          for r, br in by_rule.items()}
        ex = {}
        with torch.no_grad():
            for name, p in expert_probs(rep.datasets[key], cond, meta).items():
                em = classification_metrics(sc.y, p.argmax(1), len(meta.class_names))
                ex[name] = {"war": em.war, "uar": em.uar}
        e["experts"] = ex
        if ex:
            best = max(ex, key=lambda k: ex[k]["uar"])
            e["best_expert"] = best
            e["fused_minus_best_expert_uar"] = m.uar - ex[best]["uar"]
        entries[key] = e
    z = np.concatenate([rep.scored[k].logits for k in rep.natural]) if rep.natural else np.zeros((0, 4))
    y = np.concatenate([rep.scored[k].y for k in rep.natural]) if rep.natural else np.zeros(0, int)
    return {
        "model": ck.identity,
        "temperature": meta.temperature,
        "entries": entries,
        "natural": rep.natural,
        "mean_natural": rep.mean_all(),
        "ece_natural": ece_report(z, y, meta.temperature),
        "probs_after": None if not len(y) else float(softmax(z / meta.temperature).max(1).mean()),
    }
