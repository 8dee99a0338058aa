"""Leave-one-group-out cross-validation: every fold trained and tested, then mean ± std.

    python -m training.cv --config configs/train/cmarr_iemocap.yaml --root <feature store> \
        --out runs/iemocap_cv
    python -m training.cv --config configs/train/cmarr_iemocap.yaml --root <IEMOCAP release> \
        --store runs/features/iemocap-paper --extractors paper --out runs/iemocap_cv
    python -m training.cv ... --set ablation=wo_udcl           # one ablation = one override

``--root`` is a feature store (``manifest.json``) or a raw corpus; a raw corpus is first extracted (or
the extraction resumed) into ``--store`` with ``training.data.extract``. Folds are the store's groups: IEMOCAP
sessions (5 folds), MSP-IMPROV sessions (6 folds). Each fold's test set is one group; its validation set
is carved from the other groups as ``data.val_by`` says. Writes ``fold_<g>/`` (a training run each),
``cv.json`` (per-fold test reports and the aggregate) and ``cv.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from models.modalities import CONDITIONS
from training.loop.train import load_train_config, train

KEYS = ("war", "uar", "f1_weighted")


def aggregate(fold_reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over folds of every condition's WAR / UAR / F1, of the mean of the six missing
    conditions and of the pooled 6x set."""

    def ms(values: list[float]) -> dict[str, float]:
        a = np.asarray(values, dtype=np.float64)
        return {"mean": float(a.mean()), "std": float(a.std(ddof=0)), "n_folds": len(a)}

    reps = list(fold_reports.values())
    out: dict[str, Any] = {"conditions": {}}
    for c in CONDITIONS:
        out["conditions"][c] = {k: ms([r["conditions"][c][k] for r in reps]) for k in KEYS}
    out["mean_missing"] = {k: ms([r["mean_missing"][k] for r in reps]) for k in KEYS}
    out["mean_missing"]["definition"] = reps[0]["mean_missing"]["definition"]
    out["pooled_missing"] = {k: ms([r["pooled_missing"][k] for r in reps]) for k in KEYS}
    out["pooled_missing"]["definition"] = reps[0]["pooled_missing"]["definition"]
    return out


def markdown(agg: dict[str, Any]) -> str:
    def f(d: dict[str, float]) -> str:
        return f"{100 * d['mean']:.2f} ± {100 * d['std']:.2f}"

    lines = ["| available | WAR | UAR |", "|---|---|---|"]
    for c, m in agg["conditions"].items():
        lines.append(f"| {{{','.join(c)}}} | {f(m['war'])} | {f(m['uar'])} |")
    lines.append(
        f"| mean of 6 missing (Avg.) | {f(agg['mean_missing']['war'])} | {f(agg['mean_missing']['uar'])} |"
    )
    lines.append(f"| pooled 6x set | {f(agg['pooled_missing']['war'])} | {f(agg['pooled_missing']['uar'])} |")
    return "\n".join(lines)


def _ensure_store(root: Path, store: Path | None, corpus: str | None, extractors: str) -> Path:
    if (root / "manifest.json").is_file():
        return root
    if store is None or corpus is None:
        raise ValueError(
            f"{root} is not a feature store (no manifest.json). For a raw corpus pass --corpus "
            "(iemocap | msp-improv) and --store <folder> to extract features first, or run "
            "`python -m training.extract --corpus ... --root ... --out <store>` yourself."
        )
    from training.data import extract

    rc = extract.main(
        ["--corpus", corpus, "--root", str(root), "--out", str(store), "--extractors", extractors]
    )
    if rc != 0:
        raise RuntimeError(f"feature extraction into {store} failed with exit code {rc}")
    return store


def run_cv(
    config: str | Path,
    root: str | Path,
    out: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    folds: list[str] | None = None,
    resume: bool = False,
    device: str | None = None,
) -> dict[str, Any]:
    from training.data.store_dataset import store_groups

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    groups = folds or store_groups(root)
    if len(groups) < 2:
        raise ValueError(f"cross-validation needs >= 2 groups in {root}, got {groups}")
    reports: dict[str, dict[str, Any]] = {}
    runs: dict[str, Any] = {}
    for g in groups:
        fold_dir = out / f"fold_{g}"
        done = fold_dir / "summary.json"
        if resume and done.is_file() and json.loads(done.read_text()).get("test_report"):
            summary = json.loads(done.read_text())  # this fold finished in an earlier run
        else:
            cfg = load_train_config(config, [*overrides, f"data.test_group={g}"], root=str(root))
            res = train(cfg, fold_dir, resume=resume, device=device)
            summary = {
                "test_report": res.test_report,
                "best_epoch": res.best_epoch,
                "epochs_run": res.epochs_run,
                "best_value": res.best_value,
            }
        reports[g] = summary["test_report"]
        runs[g] = {k: summary.get(k) for k in ("best_epoch", "epochs_run", "best_value")}
    agg = aggregate(reports)
    result = {
        "config": str(config),
        "overrides": list(overrides),
        "folds": groups,
        "runs": runs,
        "aggregate": agg,
        "per_fold": reports,
    }
    (out / "cv.json").write_text(json.dumps(result, indent=1))
    (out / "cv.md").write_text(markdown(agg) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.cv", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--root", required=True, help="feature store, or raw corpus (with --corpus and --store)")
    ap.add_argument("--out", default="runs/cv")
    ap.add_argument("--store", default=None, help="where to extract features when --root is a raw corpus")
    ap.add_argument("--corpus", default=None, choices=("iemocap", "msp-improv", "files"))
    ap.add_argument(
        "--extractors", default="paper", help="extractor profile for extraction (paper | offline)"
    )
    ap.add_argument("--folds", default=None, help="comma-separated subset of groups (default: all)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    store = _ensure_store(
        Path(args.root), Path(args.store) if args.store else None, args.corpus, args.extractors
    )
    folds = args.folds.split(",") if args.folds else None
    result = run_cv(args.config, store, args.out, args.overrides, folds, args.resume, args.device)
    print(markdown(result["aggregate"]))
    return 0
