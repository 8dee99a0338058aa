"""After training: calibrate the selected checkpoint, add the single-modality experts, and report.

``finalize_checkpoint`` fits the temperature on validation (and, for multi-corpus data, the speech and
text expert heads), then rewrites the checkpoint with them, so every probability the engine reports
is calibrated. ``natural_test_report`` scores a split per corpus and condition with WAR / UAR / the
confusion matrix / ECE before and after calibration, next to every single-modality expert available in
the same condition ("fused - best expert" must never be negative).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.fusion_meta import ExpertHead, FusionMeta
from models.metrics import classification_metrics
from models.modalities import CONDITIONS, MODALITIES

from .adapters import get_adapter
from .calibrate import ece_report, fit_temperature, softmax
from .data.dataset import DataSplits, FeatureDataset, Normalizer
from .evaluate import predict_conditions
from .expert_weights import condition_row, entries_by_condition, fit_expert_weights
from .experts import FittedHead, face_expert_probs
from .natural_eval import NaturalReport, evaluate_natural


def _natural(
    model: Any,
    adapter: Any,
    samples: list,
    splits: DataSplits,
    norm: Normalizer,
    device: Any,
    max_len: dict[str, int],
) -> NaturalReport:
    return evaluate_natural(model, adapter, samples, splits.dims, norm, splits.class_names, device, max_len)


def finalize_checkpoint(
    path: str | Path,
    splits: DataSplits,
    normalizer: Normalizer,
    device: Any,
    max_len: dict[str, int],
    experts: dict[str, FittedHead] | None,
    attention_min_gain: float = 0.0,
    refit_expert_weights: bool = False,
) -> dict[str, Any]:
    """Temperature (and experts) fitted on validation, written into the checkpoint at ``path``.
    ``attention_min_gain``: see ``fit_deep_gates``; ``refit_expert_weights``: after the attention gates,
    refit the per-set expert weights on validation (``training.expert_weights``)."""
    ck = load_checkpoint(path)
    model = ck.model.to(device)
    adapter = get_adapter(ck.model_type)
    gates: dict[str, float] = {}
    gains: dict[str, float] = {}
    weights: dict[str, dict[str, float]] = {}
    if splits.description.get("source") == "multi":
        if getattr(model, "deep_gate", None) is not None:
            gates, gains = fit_deep_gates(
                model, adapter, splits, normalizer, device, max_len, attention_min_gain
            )
        if refit_expert_weights and getattr(model, "skip_gate", None) is not None:
            weights = fit_expert_weights(
                model, lambda: _natural(model, adapter, splits.val, splits, normalizer, device, max_len)
            )
        rep = _natural(model, adapter, splits.val, splits, normalizer, device, max_len)
        keys = rep.natural
        logits = [rep.scored[k].logits for k in keys]
        labels = [rep.scored[k].y for k in keys]
    else:
        from torch.utils.data import DataLoader

        from .data.dataset import collate

        loader = DataLoader(
            FeatureDataset(splits.val, splits.dims, normalizer, max_len), batch_size=64, collate_fn=collate
        )
        y, _, probs = predict_conditions(model, adapter, loader, list(CONDITIONS.values()), device)
        keep = y >= 0
        keys = list(CONDITIONS)
        logits = [np.log(np.clip(p[keep], 1e-12, 1.0)) for p in probs]  # log p = logits + const per row
        labels = [y[keep]] * len(probs)
    temperature = fit_temperature(logits, labels)
    heads: dict[str, ExpertHead] = {}
    head_info: dict[str, Any] = {}
    for name, fitted in (experts or {}).items():
        if name == "face":
            continue  # the face expert is the expression model itself; the engine reads it from its output
        heads[name] = fitted.head
        head_info[name] = {"C": fitted.c, "val_uar": fitted.val_uar, "temperature": fitted.head.temperature}
    z, y = np.concatenate(logits), np.concatenate(labels)
    calibration = {
        "temperature": temperature,
        "fitted_on": keys,
        "val": ece_report(z, y, temperature),
        "deep_gates": gates,
        "attention_uar_gain": gains,  # validation UAR of the NLL-fitted gate minus the experts' alone
        "attention_min_gain": attention_min_gain,
        "expert_weights": weights,  # per availability set, refitted on validation ({} = as trained)
    }
    meta = FusionMeta.from_extra(ck.extra)
    meta.temperature, meta.experts = temperature, heads
    save_checkpoint(
        path,
        ck.model.cpu(),
        {**ck.extra, **meta.to_extra(), "calibration": calibration, "expert_heads": head_info},
    )
    return {"calibration": calibration, "experts": head_info}


def _mean_uar(sets: list[tuple[np.ndarray, np.ndarray, np.ndarray]], g: float) -> float:
    """Mean over corpora of the UAR of logits = g * attention + experts."""
    return float(np.mean([
        classification_metrics(y, (g * d + s).argmax(1), d.shape[1]).uar for d, s, y in sets
    ]))


def fit_deep_gates(
    model: Any,
    adapter: Any,
    splits: DataSplits,
    norm: Normalizer,
    device: Any,
    max_len: dict[str, int],
    min_gain: float = 0.0,
) -> tuple[dict[str, float], dict[str, float]]:
    """Per availability set, how much CM-ARR's attention path adds to its expert path, fitted on
    validation: the weight g in [0, 1] of logits = g * attention + experts that minimises the mean (over
    the corpora scored under that set) negative log-likelihood. The attention path is kept only where
    it raises that set's mean validation UAR by at least ``min_gain`` over the experts alone (g = 0);
    a fused reading must not be worse than its experts, so a path that does not clearly help is off.
    Sets with no validation data get 0 (nothing shows that the path helps there); the sets scored are
    ``entries_by_condition``'s. Returns the gates and, per set, the validation UAR gain of the
    NLL-fitted gate over the experts alone."""
    from scipy.optimize import minimize_scalar

    from .calibrate import log_softmax

    gate = model.deep_gate
    with torch.no_grad():
        gate.fill_(1.0)
    full = _natural(model, adapter, splits.val, splits, norm, device, max_len)
    with torch.no_grad():
        gate.zero_()
    skip = _natural(model, adapter, splits.val, splits, norm, device, max_len)
    # gate stays 0 where no validation data exists: the experts alone
    fitted: dict[str, float] = {c: 0.0 for c in CONDITIONS}
    gains: dict[str, float] = {}
    for cond, keys in entries_by_condition(full).items():
        sets = [
            (full.scored[k].logits - skip.scored[k].logits, skip.scored[k].logits, full.scored[k].y)
            for k in keys
        ]

        def nll(g: float, sets: list = sets) -> float:
            return float(np.mean([-log_softmax(g * d + s)[np.arange(len(y)), y].mean() for d, s, y in sets]))

        g = float(minimize_scalar(nll, bounds=(0.0, 1.0), method="bounded").x)
        gains[cond] = round(_mean_uar(sets, g) - _mean_uar(sets, 0.0), 4)
        if gains[cond] < min_gain:
            g = 0.0  # the attention path does not beat the experts here: the experts alone decide
        fitted[cond] = round(g, 4)
        with torch.no_grad():
            gate[condition_row(cond)] = g
    return fitted, gains


def _raw(ds: FeatureDataset, i: int) -> dict[str, np.ndarray | None]:
    """Un-normalised valid frames of item ``i`` per modality (None when it has none)."""
    item = ds[i]
    out: dict[str, np.ndarray | None] = {}
    for m in MODALITIES:
        v = item[f"{m}_mask"].numpy()
        if not v.any():
            out[m] = None
            continue
        mean = np.asarray(ds.normalizer.mean[m], np.float32)
        std = np.asarray(ds.normalizer.std[m], np.float32)
        out[m] = item[m].numpy()[v] * std + mean
    return out


def expert_probs(ds: FeatureDataset, cond: str, meta: FusionMeta) -> dict[str, np.ndarray]:
    """Each single-modality expert's probabilities [N, C] on the samples of ``ds`` (rows with no reading
    are uniform) for the modalities that ``cond`` makes available."""
    names = meta.class_names
    c = len(names)
    out: dict[str, list[np.ndarray]] = {}
    for i in range(len(ds)):
        raw = _raw(ds, i)
        for name, head in meta.experts.items():
            if head.modality[0] in cond:
                x = raw[head.modality]
                out.setdefault(name, []).append(head(x) if x is not None else np.full(c, 1.0 / c))
        if "v" in cond:
            x = raw["video"]
            p = face_expert_probs(x, np.ones(len(x), bool), names) if x is not None else None
            out.setdefault("face", []).append(p if p is not None else np.full(c, 1.0 / c))
    return {k: np.stack(v) for k, v in out.items()}


def natural_test_report(
    path: str | Path, splits: DataSplits, samples: list, device: Any, max_len: dict[str, int]
) -> dict[str, Any]:
    """Per (corpus, condition): fused WAR/UAR/confusion, ECE before/after, every expert, the best one."""
    ck = load_checkpoint(path)
    meta = FusionMeta.from_extra(ck.extra)
    norm = Normalizer.from_dict(meta.normalization)
    model = ck.model.to(device)
    rep = _natural(model, get_adapter(ck.model_type), samples, splits, norm, device, max_len)
    entries: dict[str, Any] = {}
    for key, sc in rep.scored.items():
        m = rep.per_condition[key]
        cond = key.split(".")[-1]
        e: dict[str, Any] = {**m.to_dict(), **ece_report(sc.logits, sc.y, meta.temperature)}
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
