"""Real benchmark on the bundled CMU-MOSI three-modality features (CPU, a few minutes).

    python -m benchmarks.mosi --data data/mosi-trimodal --json out/mosi.json [--markdown out/mosi.md]
    python -m benchmarks.mosi --quick ...      # one seed, few epochs: the CI smoke version

For each of the 7 availability conditions it reports test accuracy (WAR), UAR and weighted F1 of

* ``logreg``: logistic regression on the concatenated standardised features of the available
  modalities (one model per condition; its L2 strength picked on validation);
* ``cmarr_full_only``: CM-ARR (configs/train/cmarr_mosi.yaml) trained on full data only;
* ``cmarr_missing``: the same model trained with per-sample missing conditions (uniform over the six
  missing conditions and full).

CM-ARR numbers are mean ± std over seeds; the best epoch is selected on validation (grouped by video),
never on test. Also reported: the majority-class and chance rates of the test set, and each target of
the task checked against the numbers. Prints the JSON to stdout.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.metrics import classification_metrics
from models.modalities import CONDITIONS, MISSING_CONDITIONS, MODALITIES
from training.data.dataset import DataSplits, Normalizer
from training.data.mosi import load_mosi
from training.loop.train import load_train_config, train

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "train" / "cmarr_mosi.yaml"


def _matrix(splits: DataSplits, which: str, mods: tuple[str, ...], norm: Normalizer) -> np.ndarray:
    samples = getattr(splits, which)
    cols = [np.stack([norm.apply(m, s.features[m][0]) for s in samples]) for m in mods]  # type: ignore[index]
    return np.concatenate(cols, axis=1).astype(np.float64)


def fit_logreg(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 200) -> tuple[np.ndarray, float]:
    """Binary logistic regression, mean log-loss + l2/2*|w|^2, solved with L-BFGS (deterministic)."""
    xt = torch.tensor(x, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=iters, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())


def logreg_baselines(splits: DataSplits, grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0)) -> dict[str, Any]:
    norm = Normalizer.fit(splits.train, splits.dims)
    ytr = np.array([s.label for s in splits.train])
    yva = np.array([s.label for s in splits.val])
    yte = np.array([s.label for s in splits.test])
    out: dict[str, Any] = {}
    for cond, mask in CONDITIONS.items():
        mods = tuple(m for m, b in zip(MODALITIES, mask, strict=True) if b)
        xtr, xva, xte = (_matrix(splits, w, mods, norm) for w in ("train", "val", "test"))
        best: tuple[float, float, np.ndarray, float] | None = None
        for l2 in grid:  # chosen on validation accuracy only
            w, b = fit_logreg(xtr, ytr, l2)
            val_acc = float(((xva @ w + b > 0).astype(int) == yva).mean())
            if best is None or val_acc > best[0]:
                best = (val_acc, l2, w, b)
        assert best is not None
        _, l2, w, b = best
        m = classification_metrics(yte, (xte @ w + b > 0).astype(int), 2)
        out[cond] = {
            "accuracy": m.war,
            "uar": m.uar,
            "f1_weighted": m.f1_weighted,
            "l2": l2,
            "val_accuracy": best[0],
        }
    return out


def _agg(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=0)), "values": [float(v) for v in a]}


def run_cmarr(
    splits: DataSplits, root: str, seeds: list[int], overrides: list[str], workdir: Path, tag: str
) -> dict[str, Any]:
    per_seed: list[dict[str, Any]] = []
    for seed in seeds:
        cfg = load_train_config(CONFIG, [*overrides, f"seed={seed}", "progress=false"], root=root)
        t0 = time.perf_counter()
        res = train(cfg, workdir / f"{tag}_seed{seed}", splits=splits, device="cpu")
        assert res.test_report is not None
        per_seed.append(
            {
                "seed": seed,
                "best_epoch": res.best_epoch,
                "epochs_run": res.epochs_run,
                "train_seconds": round(time.perf_counter() - t0, 1),
                "test": res.test_report,
            }
        )
    conds: dict[str, Any] = {}
    for c in CONDITIONS:
        conds[c] = {
            k: _agg([r["test"]["conditions"][c][src] for r in per_seed])
            for k, src in (("accuracy", "war"), ("uar", "uar"), ("f1_weighted", "f1_weighted"))
        }
    mean6 = {
        k: _agg([r["test"]["mean_missing"][src] for r in per_seed])
        for k, src in (("accuracy", "war"), ("uar", "uar"), ("f1_weighted", "f1_weighted"))
    }
    return {
        "overrides": overrides,
        "conditions": conds,
        "mean_missing": mean6,
        "runs": [{k: v for k, v in r.items() if k != "test"} for r in per_seed],
    }


def markdown(result: dict[str, Any]) -> str:
    lr, full, miss = result["logreg"], result["cmarr_full_only"], result["cmarr_missing"]

    def ms(d: dict[str, Any]) -> str:
        return f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}"

    lines = [
        f"Test set: {result['data']['test']} utterances; seeds {result['seeds']}; "
        "accuracy / UAR / weighted F1 "
        "in %, CM-ARR as mean ± std over seeds.",
        "",
        "| available | logreg acc | logreg UAR | logreg F1 | CM-ARR full-only acc | UAR | F1 "
        "| CM-ARR missing-trained acc | UAR | F1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in CONDITIONS:
        a = lr[c]
        f, m = full["conditions"][c], miss["conditions"][c]
        lines.append(
            f"| {{{','.join(c)}}} | {100 * a['accuracy']:.1f} | {100 * a['uar']:.1f} | "
            f"{100 * a['f1_weighted']:.1f} | {ms(f['accuracy'])} | {ms(f['uar'])} | {ms(f['f1_weighted'])} | "
            f"{ms(m['accuracy'])} | {ms(m['uar'])} | {ms(m['f1_weighted'])} |"
        )
    lrm = {
        k: float(np.mean([lr[c][k] for c in MISSING_CONDITIONS])) for k in ("accuracy", "uar", "f1_weighted")
    }
    fm, mm = full["mean_missing"], miss["mean_missing"]
    lines.append(
        f"| mean of 6 missing | {100 * lrm['accuracy']:.1f} | {100 * lrm['uar']:.1f} | "
        f"{100 * lrm['f1_weighted']:.1f} | {ms(fm['accuracy'])} | {ms(fm['uar'])} | "
        f"{ms(fm['f1_weighted'])} | "
        f"{ms(mm['accuracy'])} | {ms(mm['uar'])} | {ms(mm['f1_weighted'])} |"
    )
    lines += [
        "",
        f"Majority class: {100 * result['majority_accuracy']:.1f}% accuracy; chance UAR 50%.",
        "",
        "| target | value | met |",
        "|---|---|---|",
    ]
    for t in result["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else 'no'} |")
    return "\n".join(lines)


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    lr, full, miss = result["logreg"], result["cmarr_full_only"], result["cmarr_missing"]
    out = []
    acc_full = miss["conditions"]["tav"]["accuracy"]["mean"]
    out.append(
        {
            "target": "full-modality accuracy >= 80%",
            "value": f"{100 * acc_full:.1f}%",
            "met": acc_full >= 0.80,
        }
    )
    for c in MISSING_CONDITIONS:
        v, ref = miss["conditions"][c]["accuracy"]["mean"], lr[c]["accuracy"]
        out.append(
            {
                "target": f"{{{','.join(c)}}} accuracy >= logreg on the same modalities",
                "value": f"{100 * v:.1f}% vs {100 * ref:.1f}% ({100 * (v - ref):+.1f})",
                "met": v >= ref,
            }
        )
    v, ref = miss["mean_missing"]["accuracy"]["mean"], full["mean_missing"]["accuracy"]["mean"]
    out.append(
        {
            "target": "mean of 6 missing accuracy >= full-only baseline + 5 points",
            "value": f"{100 * v:.1f}% vs {100 * ref:.1f}% ({100 * (v - ref):+.1f})",
            "met": v >= ref + 0.05,
        }
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.mosi", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO / "data" / "mosi-trimodal"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=None, help="override optim.epochs of the config")
    ap.add_argument("--quick", action="store_true", help="one seed, 4 epochs (CI smoke version)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the tensors are tiny, more threads only add overhead)",
    )
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    epochs = 4 if args.quick and args.epochs is None else args.epochs
    common = list(args.overrides) + ([f"optim.epochs={epochs}"] if epochs else [])
    t0 = time.perf_counter()
    splits = load_mosi(args.data)
    yte = np.array([s.label for s in splits.test])
    result: dict[str, Any] = {
        "data": splits.summary() | {"root": args.data},
        "seeds": seeds,
        "config": str(CONFIG.relative_to(REPO)),
        "overrides": common,
        "majority_accuracy": float(np.bincount(yte).max() / len(yte)),
        "torch_threads": torch.get_num_threads(),
    }
    result["logreg"] = logreg_baselines(splits)
    with tempfile.TemporaryDirectory() as tmp:
        result["cmarr_full_only"] = run_cmarr(
            splits, args.data, seeds, [*common, "missing.mode=full"], Path(tmp), "full"
        )
        result["cmarr_missing"] = run_cmarr(splits, args.data, seeds, common, Path(tmp), "missing")
    result["targets"] = targets(result)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    table = markdown(result)
    result["markdown"] = table
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "markdown"}, indent=1))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
