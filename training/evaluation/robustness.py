"""Robustness protocol: metric-vs-missing-rate sweeps, AUILC, JSON and PNG.

``sweep_predict`` is model-agnostic: it takes a ``predict(batch) -> logits [B, C]`` callable and an
iterable of batches in the training batch contract, masks each batch with the chosen RMFM-family mode at
r = 0.0, 0.1, ..., 1.0 (fixed seed, the same seed at every rate) and records accuracy (WAR) and UAR.
AUILC is the area under the metric-vs-rate curve by the trapezoid rule (rates in [0, 1], so a
perfect model scores 1.0). SMM has no rate: ``condition_sweep`` evaluates the 7 combinations instead.
``sweep`` is the entry point of ``python -m training.evaluate --missing-mode <mode>``: it runs a model
through its trainer adapter and writes the PNG.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.modalities import CONDITIONS
from training.data.missing import MODES, MissingSpec, apply_masks, draw_masks

DEFAULT_RATES: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
Predict = Callable[[dict[str, Any]], torch.Tensor]


def auilc(rates: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoid area under values(rates). Rates must be strictly increasing."""
    r = np.asarray(rates, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if r.shape != v.shape or r.ndim != 1 or r.size < 2:
        raise ValueError(f"need two equal-length 1-D sequences of >= 2 points, got {r.shape} and {v.shape}")
    if not np.all(np.diff(r) > 0):
        raise ValueError(f"rates must be strictly increasing, got {list(rates)}")
    return float(np.sum((r[1:] - r[:-1]) * (v[1:] + v[:-1]) / 2.0))


def accuracy_uar(pred: np.ndarray, label: np.ndarray, num_classes: int) -> tuple[float, float]:
    """(WAR = accuracy, UAR = mean recall over the classes present in ``label``)."""
    acc = float((pred == label).mean()) if label.size else 0.0
    recalls = [float((pred[label == c] == c).mean()) for c in range(num_classes) if (label == c).any()]
    return acc, float(np.mean(recalls)) if recalls else 0.0


@dataclass
class SweepResult:
    mode: str
    rates: list[float]
    accuracy: list[float]  # WAR at each rate
    uar: list[float]
    auilc: float  # trapezoid area of accuracy over rates
    auilc_uar: float
    seed: int
    label: str = ""
    dropped_fraction: list[float] = field(default_factory=list)  # measured fraction of positions dropped

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path


def _predict_all(
    predict: Predict,
    batches: Iterable[dict[str, Any]],
    spec: MissingSpec,
    seed: int,
    text_token_ids: bool,
    update_avail: bool,
) -> tuple[np.ndarray, np.ndarray, float]:
    g = torch.Generator().manual_seed(seed)
    preds, labels, dropped, total = [], [], 0, 0
    for batch in batches:
        if "avail" not in batch:
            batch = {**batch, "avail": batch["present"].to(torch.float32)}
        masks = draw_masks(batch["text_mask"], batch["audio_mask"], batch["video_mask"], spec, g)
        masked = apply_masks(batch, masks, text_token_ids=text_token_ids, update_avail=update_avail)
        with torch.no_grad():
            logits = predict(masked)
        preds.append(logits.argmax(dim=-1).cpu().numpy())
        labels.append(batch["label"].cpu().numpy())
        d = sum(int(x.sum()) for x in masks.dropped)
        dropped += d
        total += d + sum(int(x.sum()) for x in masks.kept)
    return np.concatenate(preds), np.concatenate(labels), dropped / max(total, 1)


def sweep_predict(
    predict: Predict,
    batches: Iterable[dict[str, Any]],
    num_classes: int,
    mode: str = "rmfm",
    rates: Sequence[float] = DEFAULT_RATES,
    seed: int = 0,
    protect_text_ends: bool = False,
    text_token_ids: bool = False,
    update_avail: bool = True,
    label: str = "",
) -> SweepResult:
    """Metric-vs-rate curve for ``mode`` (any of MODES but 'smm') and its AUILC."""
    if mode not in MODES or mode == "smm":
        raise ValueError(
            f"sweep needs a rate-based mode {[m for m in MODES if m != 'smm']}, got {mode!r}; "
            "use condition_sweep for smm"
        )
    accs, uars, fr = [], [], []
    for r in rates:
        spec = MissingSpec(mode=mode, rate=float(r), protect_text_ends=protect_text_ends)
        p, y, f = _predict_all(predict, batches, spec, seed, text_token_ids, update_avail)
        a, u = accuracy_uar(p, y, num_classes)
        accs.append(a)
        uars.append(u)
        fr.append(f)
    return SweepResult(
        mode=mode,
        rates=[float(r) for r in rates],
        accuracy=accs,
        uar=uars,
        auilc=auilc(rates, accs),
        auilc_uar=auilc(rates, uars),
        seed=seed,
        label=label,
        dropped_fraction=fr,
    )


def condition_sweep(
    predict: Predict,
    batches: Iterable[dict[str, Any]],
    num_classes: int,
    seed: int = 0,
    protect_text_ends: bool = False,
    text_token_ids: bool = False,
    update_avail: bool = True,
) -> dict[str, dict[str, float]]:
    """SMM: accuracy and UAR under each of the 7 fixed combinations, plus their mean over the six
    missing ones ("avg", the paper's Avg.)."""
    out: dict[str, dict[str, float]] = {}
    for name in CONDITIONS:
        spec = MissingSpec(mode="smm", condition=name, protect_text_ends=protect_text_ends)
        p, y, _ = _predict_all(predict, batches, spec, seed, text_token_ids, update_avail)
        a, u = accuracy_uar(p, y, num_classes)
        out[name] = {"accuracy": a, "uar": u}
    six = [k for k in CONDITIONS if k != "tav"]
    out["avg"] = {
        "accuracy": float(np.mean([out[k]["accuracy"] for k in six])),
        "uar": float(np.mean([out[k]["uar"] for k in six])),
    }
    return out


def plot_curves(results: Sequence[SweepResult], path: str | Path, title: str = "") -> Path:
    """One PNG with the accuracy-vs-rate curve of every result (legend shows its AUILC)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 4.0), dpi=110)
    for res in results:
        name = res.label or res.mode
        ax.plot(res.rates, res.accuracy, marker="o", ms=3, label=f"{name} (AUILC {res.auilc:.3f})")
    ax.set_xlabel("missing rate r")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or (f"{results[0].mode.upper()} sweep" if results else ""))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def adapter_predictor(model: torch.nn.Module, adapter: Any, device: str | torch.device = "cpu") -> Predict:
    """predict(batch) -> logits through a trainer adapter (``forward`` then ``logits``), in eval mode."""
    model.eval()

    def predict(batch: dict[str, Any]) -> torch.Tensor:
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return adapter.logits(adapter.forward(model, moved))

    return predict


def sweep(
    *,
    model: torch.nn.Module,
    adapter: Any,
    loader: Iterable[dict[str, Any]],
    mode: str = "rmfm",
    rates: Sequence[float] = DEFAULT_RATES,
    seed: int = 0,
    device: str | torch.device = "cpu",
    class_names: Sequence[str] = (),
    plot_path: str | Path | None = None,
    label: str = "",
    protect_text_ends: bool = False,
    text_token_ids: bool = False,
    update_avail: bool = True,
) -> dict[str, Any]:
    """Sweep a trained model (through its adapter) and return a JSON-ready dict; writes the PNG curve
    to ``plot_path`` when given. ``mode='smm'`` returns the 7-combination table instead of a curve."""
    predict = adapter_predictor(model, adapter, device)
    batches = list(loader)  # iterated once per rate
    num_classes = len(class_names) or int(getattr(getattr(model, "config", None), "num_classes", 0))
    if num_classes < 2:
        raise ValueError("sweep needs class_names (or a model config with num_classes)")
    if mode == "smm":
        return {
            "mode": "smm",
            "seed": seed,
            "conditions": condition_sweep(
                predict,
                batches,
                num_classes,
                seed=seed,
                protect_text_ends=protect_text_ends,
                text_token_ids=text_token_ids,
                update_avail=update_avail,
            ),
        }
    res = sweep_predict(
        predict,
        batches,
        num_classes,
        mode=mode,
        rates=rates,
        seed=seed,
        label=label,
        protect_text_ends=protect_text_ends,
        text_token_ids=text_token_ids,
        update_avail=update_avail,
    )
    out = res.to_dict()
    if plot_path is not None:
        out["plot"] = str(plot_curves([res], plot_path))
    return out
