"""After training: calibrate the selected checkpoint, add the single-modality experts, and report.

``finalize_checkpoint`` fits the temperature on validation (and, for multi-corpus data, the speech and
text expert heads) for the selected epoch's weights, then writes the finished checkpoint with them (the
trainer's ``best.safetensors``, once), so every probability the engine reports is calibrated. The
finished checkpoint is scored by ``training.evaluation.checkpoint_report``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoint import load_fusion_checkpoint, save_checkpoint
from models.fusion_meta import ExpertHead
from models.metrics import classification_metrics
from models.modalities import CONDITIONS
from training.data.dataset import DataSplits, FeatureDataset, Normalizer
from training.evaluation.conditions import predict_conditions
from training.evaluation.natural import PAIRED_SUFFIX, NaturalReport, evaluate_natural
from training.fit.calibrate import ece_report, fit_temperature
from training.fit.expert_weights import condition_row, entries_by_condition, fit_expert_weights
from training.fit.experts import FittedHead, expert_priors
from training.fit.product_rule import (
    expert_calibration,
    fit_product_weights,
    fused_ece,
    product_priors,
    real_mean_uar,
    set_prior_bias,
)
from training.loop.adapters import get_adapter


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
    product_prior: str = "train",
    dest: str | Path | None = None,
) -> dict[str, Any]:
    """Temperature (and experts) fitted on validation for the checkpoint at ``path``; the finished
    checkpoint is written to ``dest`` (default: over ``path``).
    ``attention_min_gain``: see ``fit_deep_gates``; ``refit_expert_weights``: after the attention gates,
    refit the per-set expert weights on validation (``training.fit.expert_weights``). A CM-ARR with expert
    paths gets both rules fitted (``fit_rules``); its config's ``fusion_rule`` stays its default."""
    ck = load_fusion_checkpoint(path)
    model = ck.model.to(device)
    adapter = get_adapter(ck.model_type)
    rules: dict[str, Any] = {}
    has_rules = bool(getattr(model.config, "pooled_skip", False))
    meta = ck.meta
    head_info = _add_experts(meta, experts or {})
    rep = None
    if splits.description.get("source") == "multi":
        if has_rules:
            rules = fit_rules(
                model, adapter, splits, normalizer, device, max_len, experts or {}, attention_min_gain,
                refit_expert_weights, product_prior,
            )
        rep = _natural(model, adapter, splits.val, splits, normalizer, device, max_len)
        # Under the product rule the temperature is fitted on real samples only (no synthetic pairs).
        product = has_rules and model.fusion_rule == "product"
        keys = [k for k in rep.natural if not (product and PAIRED_SUFFIX in k)]
        keys = keys or rep.natural
        logits = [rep.scored[k].logits for k in keys]
        labels = [rep.scored[k].y for k in keys]
    else:
        keys, logits, labels = _condition_logits(model, adapter, splits, normalizer, device, max_len)
    temperature = fit_temperature(logits, labels)
    z, y = np.concatenate(logits), np.concatenate(labels)
    meta.temperature = temperature
    calibration: dict[str, Any] = {
        "temperature": temperature,
        "fitted_on": keys,
        "val": ece_report(z, y, temperature),
        "attention_min_gain": attention_min_gain,
    }
    if rules:
        learned = rules["learned"]
        calibration.update({
            "fusion_rule": model.fusion_rule,
            "rules": rules,
            # the learned rule's tables, under the names earlier cards used
            "deep_gates": learned["deep_gates"],
            "attention_uar_gain": learned["attention_uar_gain"],
            "expert_weights": learned["expert_weights"],
            "fused_val_ece": fused_ece(rep, temperature),
            **expert_calibration(rep, meta),
        })
    meta.fusion_rule = model.fusion_rule if has_rules else ""
    save_checkpoint(
        path if dest is None else dest,
        ck.model.cpu(),
        {**ck.extra, **meta.to_extra(), "calibration": calibration, "expert_heads": head_info},
    )
    return {"calibration": calibration, "experts": head_info}


def _add_experts(meta: Any, experts: dict[str, FittedHead]) -> dict[str, Any]:
    """The fitted speech and text heads into ``meta``, the face's temperature beside them (the engine
    reads the face model's own output); returns what the checkpoint records of each."""
    heads: dict[str, ExpertHead] = {}
    head_info: dict[str, Any] = {}
    for name, fitted in experts.items():
        head_info[name] = {"C": fitted.c, "val_uar": fitted.val_uar, "temperature": fitted.head.temperature}
        if name == "face":
            meta.face_temperature = fitted.head.temperature
            continue
        heads[name] = fitted.head
    meta.experts = heads
    return head_info


def _condition_logits(
    model: Any, adapter: Any, splits: DataSplits, normalizer: Normalizer, device: Any, max_len: dict[str, int]
) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Single-corpus data: the validation set under each of the 7 fixed conditions, as log-probabilities."""
    from torch.utils.data import DataLoader

    from training.data.dataset import collate

    loader = DataLoader(
        FeatureDataset(splits.val, splits.dims, normalizer, max_len), batch_size=64, collate_fn=collate
    )
    y, _, probs = predict_conditions(model, adapter, loader, list(CONDITIONS.values()), device)
    keep = y >= 0
    logits = [np.log(np.clip(p[keep], 1e-12, 1.0)) for p in probs]  # log p = logits + const per row
    return list(CONDITIONS), logits, [y[keep]] * len(probs)


def fit_rules(
    model: Any,
    adapter: Any,
    splits: DataSplits,
    norm: Normalizer,
    device: Any,
    max_len: dict[str, int],
    experts: dict[str, FittedHead],
    attention_min_gain: float,
    refit_expert_weights: bool,
    product_prior: str,
) -> dict[str, Any]:
    """Fit both fusion rules of a CM-ARR with expert paths on validation; the model keeps its default.

    * product: the experts' exponents (1 unless real paired validation data fits less,
      ``fit_product_weights``), the prior correction (``product_prior``; both choices are scored) and
      the attention path's residual gate per set, kept only where *real* validation samples show a gain
      (sets scored only on synthetic face pairs keep 0);
    * learned: the attention gates and the per-set expert weights, fitted on every validation entry,
      synthetic pairs included (``fit_deep_gates``, ``fit_expert_weights``).
    """
    default = model.fusion_rule

    def val() -> NaturalReport:
        return _natural(model, adapter, splits.val, splits, norm, device, max_len)

    model.set_fusion_rule("product")
    priors = expert_priors(experts, splits.class_names)
    with torch.no_grad():
        model.product_deep_gate.zero_()  # the product itself first, then the residual on it
    set_prior_bias(model, priors, "uniform" if product_prior == "auto" else product_prior)
    weights_p = fit_product_weights(model, val, attention_min_gain)
    prior_report = product_priors(model, priors, product_prior, val)  # with the fitted exponents
    p_gates, p_gains = fit_deep_gates(model, adapter, splits, norm, device, max_len, attention_min_gain, True)
    product = {"prior": prior_report, "expert_weights": weights_p, "deep_gates": p_gates,
               "attention_uar_gain": p_gains, "val_uar_real": round(real_mean_uar(val()), 4)}
    model.set_fusion_rule("learned")
    gates, gains = fit_deep_gates(model, adapter, splits, norm, device, max_len, attention_min_gain)
    weights: dict[str, dict[str, float]] = {}
    if refit_expert_weights:
        weights = fit_expert_weights(model, val)
    learned = {"deep_gates": gates, "attention_uar_gain": gains, "expert_weights": weights,
               "val_uar_real": round(real_mean_uar(val()), 4)}
    model.set_fusion_rule(default)
    return {"default": default, "product": product, "learned": learned}


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
    real_only: bool = False,
) -> tuple[dict[str, float], dict[str, float]]:
    """Per availability set, how much CM-ARR's attention path adds to its expert path, fitted on
    validation: the weight g in [0, 1] of logits = g * attention + experts that minimises the mean (over
    the corpora scored under that set) negative log-likelihood. The attention path is kept only where
    it raises that set's mean validation UAR by at least ``min_gain`` over the experts alone (g = 0);
    a fused reading must not be worse than its experts, so a path that does not clearly help is off.
    Sets with no validation data get 0 (nothing shows that the path helps there); the sets scored are
    ``entries_by_condition``'s. The gate is the one of the model's fusion rule (``deep_gate`` for the
    learned rule, ``product_deep_gate`` for the product); ``real_only`` leaves out the entries made of
    synthetic pairs (``<corpus>+face``), so a set scored only on those keeps 0. Returns the gates and,
    per set, the validation UAR gain of the NLL-fitted gate over the experts alone."""
    from scipy.optimize import minimize_scalar

    from training.fit.calibrate import log_softmax

    gate = model.product_deep_gate if model.fusion_rule == "product" else model.deep_gate
    with torch.no_grad():
        gate.fill_(1.0)
    full = _natural(model, adapter, splits.val, splits, norm, device, max_len)
    with torch.no_grad():
        gate.zero_()
    skip = _natural(model, adapter, splits.val, splits, norm, device, max_len)
    # gate stays 0 where no validation data exists: the experts alone
    fitted: dict[str, float] = {c: 0.0 for c in CONDITIONS}
    gains: dict[str, float] = {}
    for cond, keys in entries_by_condition(full, real_only).items():
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
