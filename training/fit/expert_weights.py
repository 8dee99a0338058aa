"""How much each modality's expert counts under each availability set, refitted on validation.

CM-ARR's ``pooled_skip`` path reads every available modality through its own calibrated expert and
weights them per availability set (``skip_gate``, row 4*t + 2*a + v). Those weights are learned during
training next to the attention path; once ``training.fit.finalize`` has decided how much the attention path
counts (often nothing, on small corpora), the weights are refitted for the path that remains: for each
availability set, non-negative weights w_m minimising the mean (over the corpora scored under that set)
validation negative log-likelihood of ``attention * g + sum_m w_m * expert_m``. This is stacking of the
calibrated experts on held-out speakers; it has at most three parameters per set.

The fused logits are linear in ``skip_gate``, so each expert's contribution is read off the model itself
(one validation pass with only that modality's column switched on), not recomputed elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from models.modalities import MODALITIES as MODALITY_ORDER
from training.fit.calibrate import log_softmax

MAX_WEIGHT = 10.0


def condition_row(cond: str) -> int:
    """Row of an availability set such as "ta" in the per-set gate tables (4*t + 2*a + v)."""
    return sum(w for m, w in zip("tav", (4, 2, 1), strict=True) if m in cond)


def entries_by_condition(report: Any, real_only: bool = False) -> dict[str, list[str]]:
    """The scored "<corpus>.<set>" entries of a validation report, grouped by availability set. Text-only
    scores of speech corpora are left out: the engine never meets them (it only has words where it hears
    speech). ``real_only``: leave out the entries made of synthetic pairs (``<corpus>+face``)."""
    from training.evaluation.natural import PAIRED_SUFFIX

    speech = {k.split(".")[0] for k in report.per_condition if k.endswith(".a")}
    by_cond: dict[str, list[str]] = {}
    for k in report.scored:
        corpus, cond = k.rsplit(".", 1)
        if cond == "t" and corpus in speech:
            continue
        if real_only and corpus.endswith(PAIRED_SUFFIX):
            continue
        by_cond.setdefault(cond, []).append(k)
    return by_cond


def fit_expert_weights(
    model: Any,
    evaluate: Callable[[], Any],
    gate: Any = None,
    real_only: bool = False,
    max_weight: float = MAX_WEIGHT,
    min_modalities: int = 1,
) -> dict[str, dict[str, float]]:
    """Refit a per-set expert weight table on validation (``evaluate()`` scores the validation split with
    the model as it stands and returns a ``NaturalReport``): ``model.skip_gate`` (the learned rule) by
    default, or ``gate`` (e.g. the product rule's ``product_gate``). ``real_only``: fit only on entries of
    real samples (no synthetic face pairs); ``min_modalities``: fit only sets with that many modalities.
    Sets without such validation data keep their weights. Returns {set: {modality: weight}} for the
    refitted sets."""
    from scipy.optimize import minimize

    gate = model.skip_gate if gate is None else gate
    trained = gate.detach().clone()
    with torch.no_grad():
        gate.zero_()
    base = evaluate()  # the attention path alone, as finalize gated it
    parts = []
    for j in range(len(MODALITY_ORDER)):
        with torch.no_grad():
            gate.zero_()
            gate[:, j] = 1.0
        parts.append(evaluate())  # base + expert j (where j is available)
    with torch.no_grad():
        gate.copy_(trained)
    fitted: dict[str, dict[str, float]] = {}
    for cond, keys in entries_by_condition(base, real_only).items():
        if len(cond) < min_modalities:
            continue
        cols = [j for j, m in enumerate(MODALITY_ORDER) if m[0] in cond]
        sets = []
        for k in keys:
            b, y = base.scored[k].logits, base.scored[k].y
            for p in parts:
                if not np.array_equal(p.scored[k].y, y):
                    raise RuntimeError(f"validation order changed between passes ({k})")
            sets.append((b, np.stack([parts[j].scored[k].logits - b for j in cols]), y))

        def nll(w: np.ndarray, sets: list = sets) -> float:
            return float(np.mean([
                -log_softmax(b + np.tensordot(w, c, axes=1))[np.arange(len(y)), y].mean() for b, c, y in sets
            ]))

        row = condition_row(cond)
        w0 = trained[row, cols].clamp(0.0, max_weight).cpu().numpy().astype(np.float64)
        res = minimize(nll, w0, method="L-BFGS-B", bounds=[(0.0, max_weight)] * len(cols))
        w = res.x if res.fun <= nll(w0) else w0  # never worse than the trained weights on validation
        with torch.no_grad():
            for j, wj in zip(cols, w, strict=True):
                gate[row, j] = float(wj)
        fitted[cond] = {MODALITY_ORDER[j]: round(float(wj), 4) for j, wj in zip(cols, w, strict=True)}
    return fitted
