"""The product rule's prior correction, fitted after training, and what the experts look like alone.

Under CM-ARR's product rule (``CMARRConfig.fusion_rule = "product"``) the fused posterior of the
available experts m is

    p(y | x)  ~  prior(y) * prod_m  p_m(y | x_m) / prior_m(y)

where p_m is expert m's calibrated posterior and prior_m the class balance it carries. The target
``prior`` is uniform (the trainer balances classes; UAR is the measure). In logits this is the sum of
the experts' calibrated logits plus ``prior_bias[row]`` = log prior - sum_m log prior_m, one row per
availability set (4*t + 2*a + v). With every prior_m equal to prior it is the textbook
prod_m p_m / prior^(n-1).

Two choices of prior_m are measured on validation (``product_priors``; ``auto`` keeps the better on
real validation samples, the plain product unless the other is clearly better):

* ``train``: each expert's own training class balance (the speech and text heads are fitted
  class-balanced, so uniform; the face expression model carries FER2013's balance);
* ``uniform``: nothing divided out (a plain product of the posteriors).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.modalities import MODALITIES
from training.fit.calibrate import ece_entry, softmax

PRIORS = ("train", "uniform")
AUTO_MARGIN = 0.005  # product_prior=auto: how much better "train" must do on validation to be chosen


def prior_bias_table(
    priors: dict[str, np.ndarray], num_classes: int, which: str, weights: np.ndarray | None = None
) -> np.ndarray:
    """[8, C] log-prior correction per availability row, log prior - sum_m w_m log prior_m (zero-mean per
    row; softmax ignores a constant). ``weights``: the [8, 3] expert exponents (default all 1)."""
    if which not in PRIORS:
        raise ValueError(f"product prior must be one of {PRIORS}, got {which!r}")
    table = np.zeros((8, num_classes))
    if which == "uniform":
        return table
    w = np.ones((8, 3)) if weights is None else np.asarray(weights, np.float64)
    target = np.full(num_classes, 1.0 / num_classes)
    for row in range(1, 8):
        b = np.log(target)
        for j, m in enumerate(MODALITIES):
            if row & (4 >> j) and m in priors:
                b = b - w[row, j] * np.log(np.clip(priors[m], 1e-6, 1.0))
        table[row] = b - b.mean()
    return table


def set_prior_bias(model: Any, priors: dict[str, np.ndarray], which: str) -> np.ndarray:
    weights = model.product_gate.detach().cpu().numpy()
    table = prior_bias_table(priors, model.prior_bias.shape[1], which, weights)
    with torch.no_grad():
        model.prior_bias.copy_(torch.as_tensor(table, dtype=model.prior_bias.dtype))
    return table


def real_mean_uar(report: Any) -> float:
    """Mean UAR over the validation entries made of real samples (no synthetic face pairs)."""
    from training.evaluation.natural import PAIRED_SUFFIX

    keys = [k for k in report.per_condition if PAIRED_SUFFIX not in k]
    return float(np.mean([report.per_condition[k].uar for k in keys])) if keys else float("nan")


def product_priors(
    model: Any, priors: dict[str, np.ndarray], chosen: str, evaluate: Any
) -> dict[str, Any]:
    """Score validation (``evaluate()`` -> NaturalReport) under each prior choice, then keep ``chosen``
    ("auto": ``train`` only where it beats ``uniform`` by more than ``AUTO_MARGIN`` of mean validation UAR
    on real samples; the plain product otherwise). Returns per choice the mean UAR over the real entries
    and over every entry, the choice and the priors."""
    out: dict[str, Any] = {"asked": chosen, "priors": {m: [float(v) for v in p] for m, p in priors.items()}}
    for which in PRIORS:
        set_prior_bias(model, priors, which)
        rep = evaluate()
        out[which] = {
            "val_uar_real": round(real_mean_uar(rep), 4),
            "val_uar_all": round(float(np.mean([m.uar for m in rep.per_condition.values()])), 4),
        }
    if chosen == "auto":
        gain = out["train"]["val_uar_real"] - out["uniform"]["val_uar_real"]
        chosen = "train" if gain > AUTO_MARGIN else "uniform"
    out["chosen"] = chosen
    set_prior_bias(model, priors, chosen)
    return out


def expert_calibration(report: Any, meta: Any) -> dict[str, Any]:
    """Each expert's ECE and UAR on its own validation data: speech on the held-out speakers of the
    speech corpora (``<corpus>.a``), text on the text-only corpus (MELD dev), the face on the face
    corpus's windows (FER2013 PublicTest pseudo-videos). Also how far the text expert strays from the
    uniform prior on the scripted sentences of the speech corpora (mean KL to uniform, nats, and mean
    top probability), next to the same on MELD."""
    from models.metrics import classification_metrics
    from training.fit.expert_readings import expert_probs

    speech = {k.split(".")[0] for k in report.per_condition if k.endswith(".a")}
    out: dict[str, Any] = {}
    text_spread: dict[str, Any] = {}
    for key, ds in report.datasets.items():
        corpus, cond = key.rsplit(".", 1)
        if cond not in ("a", "t", "v") or "+" in corpus:
            continue
        y = report.scored[key].y
        probs = expert_probs(ds, cond, meta)
        name = {"a": "speech", "t": "text", "v": "face"}[cond]
        if name not in probs:
            continue
        p = probs[name]
        if cond == "t":
            c = p.shape[1]
            kl = float(np.mean(np.sum(p * (np.log(np.clip(p, 1e-12, 1)) - np.log(1.0 / c)), axis=1)))
            top = round(float(p.max(1).mean()), 4)
            text_spread[corpus] = {"kl_to_uniform": round(kl, 4), "mean_top_prob": top,
                                   "scripted": corpus in speech}
            if corpus in speech:
                continue  # the engine never meets the words of a speech corpus without their voice
        m = classification_metrics(y, p.argmax(1), p.shape[1])
        out[key] = {"expert": name, "n": int(len(y)), "uar": round(m.uar, 4), **ece_entry(p, y)}
    return {"experts": out, "text_spread": text_spread}


def fused_ece(report: Any, temperature: float) -> dict[str, dict[str, float]]:
    """Fused ECE per validation entry after the temperature, with its sampling floor at that size."""
    return {k: ece_entry(softmax(sc.logits / temperature), sc.y) for k, sc in report.scored.items()}



def fit_product_weights(model: Any, evaluate: Any, min_gain: float = 0.0) -> dict[str, Any]:
    """The product rule's expert exponents w_m, 1 unless *real* paired validation data says otherwise.

    For each set of two or more modalities that real validation samples have (here: speech with its own
    ASR words, ``ta``, on held-out speakers), non-negative weights in [0, 1] minimising the validation
    NLL of the product (``fit_expert_weights`` on ``product_gate``); a weight in [0, 1] only discounts an
    expert that real pairs show to be weaker next to the others than alone, never sharpens one. Then
    ``floor_weights``: a discounted expert keeps a weight only where it raises validation UAR by at
    least ``min_gain`` (as the attention path must). A set
    without real pairs (here every set with a face next to another modality) gives each of its experts
    the exponent that expert has in the fitted set sharing the most modalities with it (here: text keeps
    its exponent from next to speech wherever it meets another expert), and 1 to the rest. Run with
    the attention residual off. Returns the fitted and inherited weights."""
    from models.modalities import CONDITIONS
    from training.fit.expert_weights import condition_row, fit_expert_weights

    with torch.no_grad():
        model.product_gate.fill_(1.0)
    fitted = fit_expert_weights(
        model, evaluate, gate=model.product_gate, real_only=True, max_weight=1.0, min_modalities=2
    )
    floors = {cond: floor_weights(model, evaluate, cond, ws, min_gain) for cond, ws in fitted.items()}
    fitted = {cond: f["weights"] for cond, f in floors.items()}
    inherited: dict[str, str] = {}
    for cond in CONDITIONS:
        if len(cond) < 2 or cond in fitted:
            continue
        # the fitted set that shares the most modalities with this one (ties: the smaller set)
        overlap = [f for f in fitted if set(f) & set(cond)]
        if not overlap:
            continue
        src = max(overlap, key=lambda f: (len(set(f) & set(cond)), -len(f)))
        with torch.no_grad():
            for j, m in enumerate(MODALITIES):
                if m in fitted[src] and m[0] in cond:
                    model.product_gate[condition_row(cond), j] = fitted[src][m]
        inherited[cond] = src
    table = model.product_gate.detach().cpu().numpy()
    weights = {
        c: {m: round(float(table[condition_row(c), j]), 4) for j, m in enumerate(MODALITIES) if m[0] in c}
        for c in CONDITIONS
    }
    return {"fitted_on_real_pairs": fitted, "floor": floors, "inherited_from": inherited, "weights": weights}


SCALES = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.0)


def floor_weights(
    model: Any, evaluate: Any, cond: str, weights: dict[str, float], min_gain: float = 0.0
) -> dict[str, Any]:
    """Set ``cond``'s exponents from their NLL fit by the same rule as the attention path: the discounted
    experts' weights (those below 1) are scaled by the one of ``SCALES`` that gives the best mean
    validation UAR on the real entries of that set (ties: the larger weight), and by 0 unless that beats
    leaving them out by at least ``min_gain``: an expert counts next to the others only where real
    pairs show that it helps. Also recorded: the best single expert's UAR on the same corpora (a fused
    reading must not fall below it)."""
    from models.modalities import MODALITIES as order
    from training.fit.expert_weights import condition_row

    row = condition_row(cond)

    def apply(ws: dict[str, float]) -> None:
        with torch.no_grad():
            for j, m in enumerate(order):
                if m in ws:
                    model.product_gate[row, j] = ws[m]

    tried: list[dict[str, float]] = []
    for scale in SCALES:
        ws = {m: (w if w >= 1.0 else w * scale) for m, w in weights.items()}
        apply(ws)
        rep = evaluate()
        corpora = [k.rsplit(".", 1)[0] for k in rep.per_condition
                   if k.endswith(f".{cond}") and "+" not in k.rsplit(".", 1)[0]]
        fused = float(np.mean([rep.per_condition[f"{c}.{cond}"].uar for c in corpora]))
        floor = float(np.mean([
            max(rep.per_condition[f"{c}.{m[0]}"].uar for m in order if m[0] in cond
                and f"{c}.{m[0]}" in rep.per_condition)
            for c in corpora
        ]))
        tried.append({"scale": scale, "val_uar": round(fused, 4), "best_expert_uar": round(floor, 4)})
    best = max(tried, key=lambda t: (t["val_uar"], t["scale"]))
    without = tried[-1]  # scale 0: the discounted experts left out
    scale = best["scale"] if best["val_uar"] - without["val_uar"] >= min_gain else 0.0
    chosen = {m: (w if w >= 1.0 else w * scale) for m, w in weights.items()}
    apply(chosen)
    return {"weights": {m: round(float(w), 4) for m, w in chosen.items()}, "nll_fit": weights,
            "scale": scale, "min_gain": min_gain, "tried": tried}
