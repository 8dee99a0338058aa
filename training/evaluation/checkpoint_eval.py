"""A trained checkpoint evaluated on its own data under every availability condition, with plots.

    python -m training.evaluate --checkpoint runs/x/best.safetensors --data <root> --json out.json \
        [--split test|val|train] [--plots out/plots] [--missing-mode rmfm ...]

The checkpoint records its data source, split rule and normalisation statistics, so ``--data`` (the
same corpus root or feature store) rebuilds exactly the split it was trained against. The report is
``training.evaluation.conditions``'s, or a feature-level missing sweep (``--missing-mode``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from training.data.dataset import FeatureDataset, collate
from training.evaluation.conditions import ConditionReport, evaluate_conditions


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


def _parser() -> argparse.ArgumentParser:
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
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
        from training.evaluation import robustness  # feature-level missing sweeps

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
