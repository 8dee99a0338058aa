"""Evaluation under every availability condition: WAR / UAR / F1 / per-class recall / confusion.

    python -m training.evaluate --checkpoint runs/x/best.safetensors --data <root> --json out.json \
        [--split test|val|train] [--plots out/plots] [--missing-mode rmfm ...]

The checkpoint records its data source, split rule and normalisation statistics, so ``--data`` (the
same corpus root or feature store) rebuilds exactly the split it was trained against. The report holds
each of the six missing conditions and full, plus two summaries of the six, both labelled:
``mean_missing`` (the mean of the six per-condition metrics, the CM-ARR paper's "Avg.") and
``pooled_missing`` (metrics over the pooled 6x test set, as MMIN-style papers report).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from models.metrics import Metrics, classification_metrics
from models.modalities import CONDITIONS, MISSING_CONDITIONS
from training.data.dataset import FeatureDataset, batch_to, collate
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


def save_plots(report: ConditionReport, out_dir: str | Path, title: str = "") -> list[Path]:
    """Confusion matrices (full and pooled 6x) and a per-condition WAR/UAR bar plot, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    cms = {"full": report.per_condition.get("tav")}
    if report.pooled_missing is not None:
        cms["pooled_missing"] = report.pooled_missing
    for name, m in cms.items():
        if m is None:
            continue
        cm = np.asarray(m.confusion, dtype=np.float64)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(report.class_names)), report.class_names)
        ax.set_yticks(range(len(report.class_names)), report.class_names)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(
                    j,
                    i,
                    f"{int(cm[i, j])}\n{norm[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
        ax.set_xlabel("predicted")
        ax.set_ylabel("reference")
        ax.set_title(f"{title} confusion ({name}): WAR {m.war:.3f} UAR {m.uar:.3f}".strip(), fontsize=9)
        fig.tight_layout()
        path = out / f"confusion_{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    names = list(report.per_condition)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(x - 0.2, [report.per_condition[n].war for n in names], 0.4, label="WAR")
    ax.bar(x + 0.2, [report.per_condition[n].uar for n in names], 0.4, label="UAR")
    ax.set_xticks(x, [f"{{{','.join(n)}}}" for n in names])
    ax.set_ylim(0, 1)
    ax.set_ylabel("recall")
    ax.set_title(f"{title} per available modality set".strip(), fontsize=9)
    ax.legend()
    fig.tight_layout()
    path = out / "conditions.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    return written


def format_table(report: ConditionReport) -> str:
    """Markdown table of WAR / UAR per condition plus both summaries of the six missing conditions."""
    lines = ["| available | WAR | UAR | F1 (weighted) |", "|---|---|---|---|"]
    for n, m in report.per_condition.items():
        lines.append(
            f"| {{{','.join(n)}}} | {100 * m.war:.2f} | {100 * m.uar:.2f} | {100 * m.f1_weighted:.2f} |"
        )
    mm = report.mean_missing()
    if mm:
        lines.append(
            f"| mean of 6 missing | {100 * mm['war']:.2f} | {100 * mm['uar']:.2f} | "
            f"{100 * mm['f1_weighted']:.2f} |"
        )
    if report.pooled_missing is not None:
        p = report.pooled_missing
        lines.append(f"| pooled 6x set | {100 * p.war:.2f} | {100 * p.uar:.2f} | {100 * p.f1_weighted:.2f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def load_for_eval(
    checkpoint: str | Path, data_root: str | Path | None, split: str
) -> tuple[Any, Any, FeatureDataset]:
    """(Checkpoint, adapter, dataset of the requested split, normalised with the checkpoint's statistics)."""
    from models.checkpoint import load_checkpoint
    from training.config import DataConfig
    from training.data.dataset import Normalizer
    from training.data.sources import load_splits
    from training.loop.adapters import get_adapter

    ckpt = load_checkpoint(checkpoint)
    extra = ckpt.extra
    if "data_config" not in extra or "normalization" not in extra:
        raise ValueError(
            f"{checkpoint} lacks data_config / normalization in its metadata; it was not written "
            "by training.loop.train"
        )
    from models.config_io import from_dict

    data_dict = dict(extra["data_config"])
    if data_root is not None:
        data_dict["root"] = str(data_root)
    data_cfg = from_dict(DataConfig, data_dict)
    splits = load_splits(data_cfg)
    samples = {"train": splits.train, "val": splits.val, "test": splits.test}[split]
    if not samples:
        raise ValueError(f"split {split!r} is empty for this checkpoint's data configuration")
    if tuple(splits.class_names) != tuple(extra.get("class_names", splits.class_names)):
        raise ValueError(
            f"data classes {splits.class_names} != checkpoint classes {extra.get('class_names')}"
        )
    ds = FeatureDataset(
        samples, splits.dims, Normalizer.from_dict(extra["normalization"]), max_len=dict(data_cfg.max_len)
    )
    return ckpt, get_adapter(ckpt.model_type), ds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default=None, help="corpus root / feature store (default: the one trained on)")
    ap.add_argument("--split", default="test", choices=("test", "val", "train"))
    ap.add_argument("--json", default=None, help="write the report here")
    ap.add_argument("--plots", default=None, help="folder for confusion / per-condition PNGs")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--missing-mode",
        default=None,
        help="feature-level missing sweep (rmfm, rmfm_same, rmm, tmfm, stmfm, smm) via "
        "training.evaluation.robustness",
    )
    ap.add_argument("--rates", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0")
    ap.add_argument("--sweep-seed", type=int, default=0)
    args = ap.parse_args(argv)

    ckpt, adapter, ds = load_for_eval(args.checkpoint, args.data, args.split)
    device = torch.device(args.device)
    model = ckpt.model.to(device)
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=False, collate_fn=collate)
    class_names = tuple(ckpt.extra.get("class_names", ckpt.config.class_names))
    result: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        "identity": ckpt.identity,
        "split": args.split,
        "n": len(ds),
    }
    if args.missing_mode:
        import importlib

        robustness = importlib.import_module("training.evaluation.robustness")  # feature-level missing sweeps
        rates = [float(r) for r in args.rates.split(",")]
        sweep = robustness.sweep(
            model=model,
            adapter=adapter,
            loader=loader,
            mode=args.missing_mode,
            rates=rates,
            seed=args.sweep_seed,
            device=device,
            class_names=class_names,
            plot_path=str(Path(args.plots) / f"sweep_{args.missing_mode}.png") if args.plots else None,
        )
        result["missing_sweep"] = (
            sweep if isinstance(sweep, dict) else getattr(sweep, "to_dict", lambda: sweep)()
        )
    else:
        report = evaluate_conditions(model, adapter, loader, class_names, device)
        result.update(report.to_dict())
        print(format_table(report))
        if args.plots:
            result["plots"] = [str(p) for p in save_plots(report, args.plots, title=args.split)]
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    else:
        json.dump(result, sys.stdout, indent=1)
        print()
    return 0
