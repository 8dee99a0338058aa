"""CIDer against CM-ARR on real feature sequences: RMFM-family robustness, MACI on MELD, epoch time.

    python -m benchmarks.cider_sequences --store runs/offline-v3/features --json out/cider_sequences.json \
        [--plots out/cider_sequences] [--seeds 0,1,2] [--epochs 20] [--meld-seeds 0] [--meld-epochs 10]

The store is the multi-corpus feature store of the offline profile (``make train-offline`` builds it):
Whisper encoder states at 50 Hz and MiniLM token states, one sequence per utterance.

1. **Speech + text** (RAVDESS and EmoDB with their ASR transcripts). Test: the first of the five
   leave-speakers-out folds of ``training.recipe.reproduce`` (people never heard in training); validation:
   held-out speakers of the rest. Each of ``training.loop.variants.VARIANTS`` (CM-ARR and CIDer, each with
   and without RMFM training) is trained under every seed. On test: RMFM, RMFM_same, RMM, TMFM and
   STMFM sweeps r = 0.0..1.0 (TMFM/STMFM on relative time, ``training.data.missing``) with their AUILC
   (trapezoid; over accuracy as in the papers, and over UAR), and the SMM table of the 7 combinations.
2. **MELD text** (official splits): the same variants and sweeps on token sequences alone.
3. **MACI on MELD**: IID = the official split, OOD = ``training.evaluation.ood_dialogues`` (whole dialogues
   moved so that labels and bias words shift). Each CIDer variant is trained on each split's train;
   MACI is fitted on the frozen model (``training.fit.maci``; tau on validation UAR) and test UAR is
   reported with and without it.

Prints one JSON object (also written to --json) with a ``targets`` object, the tables in markdown on
stderr, and, with --plots, one PNG per corpus and mode (mean accuracy curve over seeds per variant).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from benchmarks.report import emit
from models.modalities import MODALITIES
from training.config import DataConfig
from training.data.dataset import Normalizer, Sample
from training.data.multicorpus import multicorpus_splits
from training.evaluation.ood_dialogues import ood_dialogue_split
from training.evaluation.robustness import (
    SweepResult,
    accuracy_uar,
    condition_sweep,
    plot_curves,
    sweep_predict,
)
from training.fit.maci import Split, encode_counterfactuals, fit_maci, pad
from training.loop.variants import (
    VARIANTS,
    batches_of,
    build_variant,
    length_order,
    load_items,
    predict_logits,
    train_variant,
)
from training.recipe import speaker_folds

REPO = Path(__file__).resolve().parents[1]
RATE_MODES = ("rmfm", "rmfm_same", "rmm", "tmfm", "stmfm")
CLASSES = ("ang", "hap", "neu", "sad")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sections() -> tuple[dict[str, Any], dict[str, Any]]:
    """Model sections: CM-ARR as the shipped recipe builds it (no expert path: the comparison is of the
    fusion architectures), CIDer at the public recipe's width with its MSSD settings."""
    cm = yaml.safe_load((REPO / "configs/train/cmarr_offline.yaml").read_text())["model"]
    cm = {k: v for k, v in cm.items() if k not in ("pooled_skip", "logprob_tail")}
    ci = yaml.safe_load((REPO / "configs/model/cider.yaml").read_text())
    ci = {k: v for k, v in ci.items() if k not in ("text_dim", "audio_dim", "video_dim")}
    return cm, ci


def store_splits(store: str, corpora: list[str], test_speakers: tuple[str, ...] = ()) -> Any:
    cfg = DataConfig(
        source="multi",
        root=store,
        corpora=dict.fromkeys(corpora, 1.0),
        eval_only=(),
        test_speakers=test_speakers,
        val_by="speaker",
    )
    return multicorpus_splits(cfg)


def subsample(items: list, n: int, seed: int = 0) -> list:
    """A seeded, class-stratified subset of about ``n`` items (all of them when n is 0 or larger)."""
    if not n or n >= len(items):
        return items
    rng = np.random.default_rng(seed)
    by: dict[int, list[int]] = {}
    for i, it in enumerate(items):
        by.setdefault(int(it["label"]), []).append(i)
    keep = [
        i for idx in by.values() for i in rng.permutation(idx)[: max(1, round(n * len(idx) / len(items)))]
    ]
    return [items[i] for i in sorted(keep)]


def run_variants(
    name: str,
    train: list[Sample],
    val: list[Sample],
    test: list[Sample],
    dims: dict[str, int],
    seeds: list[int],
    epochs: int,
    variants: list[str],
    keep_models: bool = False,
    modes: tuple[str, ...] = RATE_MODES,
    sweep_n: int = 0,
    sweeps: bool = True,
) -> dict[str, Any]:
    norm = Normalizer.fit(train, dims)
    tr, va, te = (load_items(s, dims, norm) for s in (train, val, test))
    val_b, test_b = batches_of(va), batches_of(te)
    sweep_b = batches_of(subsample(te, sweep_n)) if sweep_n else test_b
    cm, ci = sections()
    res: dict[str, Any] = {
        "n": {"train": len(tr), "val": len(va), "test": len(te)},
        "runs": {},
        "_models": {},
    }
    for v in variants:
        runs = []
        for seed in seeds:
            torch.manual_seed(seed)
            adapter, model = build_variant(v, dims, CLASSES, cm, ci)
            log(f"[{name}] {v} seed {seed}: {sum(p.numel() for p in model.parameters())} parameters")
            st = train_variant(v, adapter, model, tr, val_b, len(CLASSES), epochs, seed, log=log)
            z, y = predict_logits(adapter, model, test_b)
            war, uar = accuracy_uar(z.argmax(-1).numpy(), y.numpy(), len(CLASSES))

            def predict(b: dict[str, Any], a: Any = adapter, m: Any = model) -> torch.Tensor:
                return a.logits(a.forward(m, b))

            t0 = time.perf_counter()
            sw = {
                mode: sweep_predict(predict, sweep_b, len(CLASSES), mode=mode, seed=seed, label=v).to_dict()
                for mode in (modes if sweeps else ())
            }
            smm = condition_sweep(predict, sweep_b, len(CLASSES), seed=seed) if sweeps else {}
            log(f"  test UAR {uar:.3f}; sweeps {time.perf_counter() - t0:.0f} s")
            runs.append(
                {
                    "seed": seed,
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "train": st.__dict__,
                    "test_war": war,
                    "test_uar": uar,
                    "sweeps": sw,
                    "smm": smm,
                    "sweep_n": sum(len(b["label"]) for b in sweep_b),
                }
            )
            if keep_models:
                res["_models"][(v, seed)] = (adapter, model, norm)
        res["runs"][v] = runs
    return res


def mean_sd(xs: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(xs)), "sd": float(np.std(xs)), "n": len(xs)}


def summarise(res: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v, runs in res["runs"].items():
        row: dict[str, Any] = {
            "test_uar": mean_sd([r["test_uar"] for r in runs]),
            "test_war": mean_sd([r["test_war"] for r in runs]),
            "sec_per_epoch": mean_sd([r["train"]["sec_per_epoch"] for r in runs]),
            "parameters": runs[0]["parameters"],
        }
        for mode in runs[0]["sweeps"]:
            row[f"auilc_{mode}"] = mean_sd([r["sweeps"][mode]["auilc"] for r in runs])
            row[f"auilc_uar_{mode}"] = mean_sd([r["sweeps"][mode]["auilc_uar"] for r in runs])
        if runs[0]["smm"]:
            row["smm_avg_uar"] = mean_sd([r["smm"]["avg"]["uar"] for r in runs])
        out[v] = row
    return out


def ratio(res: dict[str, Any], model: str, key: str = "auilc") -> dict[str, Any]:
    """RMFM-trained / plain AUILC (RMFM sweep): per seed and of the means."""
    a, b = res["runs"].get(f"{model}+rmfm"), res["runs"].get(model)
    if not a or not b:
        return {}
    per = [x["sweeps"]["rmfm"][key] / y["sweeps"]["rmfm"][key] for x, y in zip(a, b, strict=True)]
    means = np.mean([x["sweeps"]["rmfm"][key] for x in a]) / np.mean([y["sweeps"]["rmfm"][key] for y in b])
    return {"of_means": float(means), "per_seed": per, "min_seed": float(min(per))}


def plots(res: dict[str, Any], corpus: str, out: Path) -> list[str]:
    paths = []
    for mode in next(iter(res["runs"].values()))[0]["sweeps"]:
        curves = []
        for v, runs in res["runs"].items():
            acc = np.mean([r["sweeps"][mode]["accuracy"] for r in runs], axis=0).tolist()
            uar = np.mean([r["sweeps"][mode]["uar"] for r in runs], axis=0).tolist()
            rates = runs[0]["sweeps"][mode]["rates"]
            curves.append(
                SweepResult(
                    mode,
                    rates,
                    acc,
                    uar,
                    float(np.trapezoid(acc, rates)),
                    float(np.trapezoid(uar, rates)),
                    0,
                    label=f"{v} ({len(runs)} seeds)",
                )
            )
        title = f"{corpus}: accuracy vs {mode.upper()} rate (test speakers)"
        paths.append(str(plot_curves(curves, out / f"{corpus}_{mode}.png", title=title)))
    return paths


def maci_split(
    model_bundle: tuple,
    samples: list[Sample],
    dims: dict[str, int],
    transcripts: dict[str, str],
    keep: set[str],
    encoder: Any,
) -> Split:
    _, _, norm = model_bundle
    items = load_items(samples, dims, norm)
    order = length_order(items)
    batches = batches_of(items, 128, order)
    cf_all = encode_counterfactuals([transcripts[s.id] for s in samples], keep, encoder, norm)
    cf = [pad([cf_all[i] for i in order[s : s + 128]], dims["text"]) for s in range(0, len(order), 128)]
    return Split(batches, cf)


def run_maci(
    store: str,
    splits: dict[str, tuple[list, list, list]],
    dims: dict[str, int],
    seeds: list[int],
    epochs: int,
    variants: list[str],
    trained: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """MACI on every CIDer variant of every split; ``trained[split]`` reuses models trained on that split."""
    from models.cider import select_bias_words
    from models.encoders.profile import Extractors, profile_from_description
    from training.data.feature_store import FeatureStore

    fs = FeatureStore(store)
    encoder = Extractors(profile_from_description(fs.manifest["extractors"])).text
    out: dict[str, Any] = {}
    for split_name, (train, val, test) in splits.items():
        texts = {s.id: str(fs.meta(s.id).get("transcript") or "") for s in train + val + test}
        bias = set(select_bias_words([texts[s.id] for s in train], [s.label for s in train], len(CLASSES)))
        models = (trained or {}).get(split_name)
        if models is None:
            res = run_variants(
                f"meld-{split_name}",
                train,
                val,
                test,
                dims,
                seeds,
                epochs,
                variants,
                keep_models=True,
                sweeps=False,
            )
            models = res.pop("_models")
        out[split_name] = {
            "n": {"train": len(train), "val": len(val), "test": len(test)},
            "n_bias_words": len(bias),
            "variants": {},
        }
        sp: dict[str, Split] = {}  # one normaliser per split (fitted on its train): built once
        for (v, seed), bundle in models.items():
            if v not in variants:
                continue
            model = bundle[1]
            if not sp:
                sp = {
                    k: maci_split(bundle, s, dims, texts, bias, encoder)
                    for k, s in (("train", train), ("val", val), ("test", test))
                }
            log(f"[maci {split_name}] {v} seed {seed}")
            m = fit_maci(
                model,
                sp["train"],
                sp["val"],
                {"test": sp["test"]},
                [texts[s.id] for s in train],
                len(CLASSES),
                seed,
            )
            out[split_name]["variants"].setdefault(v, []).append({"seed": seed, **m})
    return out


def maci_targets(maci: dict[str, Any], variant: str) -> dict[str, Any]:
    def gain(split: str) -> list[float]:
        return [
            100 * (r["test"]["maci"]["uar"] - r["test"]["plain"]["uar"])
            for r in maci[split]["variants"][variant]
        ]

    return {"ood": gain("ood"), "iid": gain("iid")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.cider_sequences", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--store", default="runs/offline-v3/features", help="multi-corpus feature store")
    ap.add_argument("--json", default=None)
    ap.add_argument("--plots", default=None, help="folder for the PNG curves")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--meld-seeds", default="0")
    ap.add_argument("--meld-epochs", type=int, default=10)
    ap.add_argument(
        "--meld-limit", type=int, default=0, help="use at most N MELD utterances per split (0: all)"
    )
    ap.add_argument(
        "--meld-sweep-n",
        type=int,
        default=600,
        help="MELD sweeps on a seeded class-stratified subset of this many test utterances (0: all)",
    )
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--parts", default="speech_text,meld_text,maci")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--merge",
        default=None,
        metavar="JSON",
        help="an earlier report of this benchmark: its parts are kept and the targets computed over both",
    )
    args = ap.parse_args(argv)
    if not (Path(args.store) / "manifest.json").is_file():
        raise SystemExit(
            f"{args.store} is not a feature store; build it with `make train-offline DATA=...` "
            "or `python -m training.extract ...`"
        )
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    meld_seeds = [int(s) for s in args.meld_seeds.split(",") if s]
    variants = [v for v in args.variants.split(",") if v]
    parts = set(args.parts.split(","))
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "cider_sequences",
        "store": Path(args.store).name,
        "seeds": seeds,
        "epochs": args.epochs,
        "meld_seeds": meld_seeds,
        "meld_epochs": args.meld_epochs,
        "threads": args.threads,
        "torch": torch.__version__,
        "modalities": list(MODALITIES),
    }
    if args.merge:
        old = json.loads(Path(args.merge).read_text())
        kept = {k: old[k] for k in ("speech_text", "meld_text", "maci", "ood_split") if k in old}
        result.update(kept)
        result["merged_from"] = {
            "parts": sorted(kept),
            "wall_seconds": old.get("wall_seconds"),
            "threads": old.get("threads"),
            "seeds": old.get("seeds"),
            "meld_seeds": old.get("meld_seeds"),
            "meld_epochs": old.get("meld_epochs"),
        }
    plot_dir = Path(args.plots) if args.plots else None
    if "speech_text" in parts:
        test_speakers = tuple(speaker_folds(Path(args.store), 5)[0])
        sp = store_splits(args.store, ["ravdess", "emodb"], test_speakers)
        res = run_variants("speech+text", sp.train, sp.val, sp.test, sp.dims, seeds, args.epochs, variants)
        res.pop("_models")
        res["test_speakers"] = list(test_speakers)
        res["summary"] = summarise(res)
        if plot_dir:
            res["plots"] = plots(res, "speech_text", plot_dir)
        result["speech_text"] = res
    meld, meld_models = None, None
    if parts & {"meld_text", "maci"}:
        meld = store_splits(args.store, ["meld"])
        if args.meld_limit:
            meld.train, meld.val, meld.test = (
                s[: args.meld_limit] for s in (meld.train, meld.val, meld.test)
            )
    if "meld_text" in parts and meld is not None:
        # Text alone: RMFM_same and TMFM coincide with RMFM on one modality, so RMFM, STMFM and RMM remain.
        res = run_variants(
            "meld",
            meld.train,
            meld.val,
            meld.test,
            meld.dims,
            meld_seeds,
            args.meld_epochs,
            variants,
            modes=("rmfm", "rmm", "stmfm"),
            sweep_n=args.meld_sweep_n,
            keep_models=True,
        )
        meld_models = res.pop("_models")
        res["summary"] = summarise(res)
        if plot_dir:
            res["plots"] = plots(res, "meld_text", plot_dir)
        result["meld_text"] = res
    if "maci" in parts and meld is not None:
        from training.data.feature_store import FeatureStore

        fs = FeatureStore(args.store)
        pooled = meld.train + meld.val + meld.test
        transcripts = {s.id: str(fs.meta(s.id).get("transcript") or "") for s in pooled}
        ood = ood_dialogue_split(pooled, transcripts, len(CLASSES), seed=0)
        result["ood_split"] = ood.description
        cider_variants = [v for v in variants if v.startswith("cider")]
        earlier = result.get("maci")
        result["maci"] = run_maci(
            args.store,
            {"iid": (meld.train, meld.val, meld.test), "ood": (ood.train, ood.val, ood.test)},
            meld.dims,
            meld_seeds,
            args.meld_epochs,
            cider_variants,
            trained={"iid": meld_models} if meld_models else None,
        )
        if earlier:  # --merge: MACI runs of other seeds are pooled with these
            for split, part in earlier.items():
                for v, runs in part["variants"].items():
                    mine = result["maci"].setdefault(split, part)["variants"].setdefault(v, [])
                    seen = {r["seed"] for r in mine}
                    mine += [r for r in runs if r["seed"] not in seen]
                    mine.sort(key=lambda r: r["seed"])
    result["targets"] = targets(result)
    result["wall_seconds"] = time.perf_counter() - t0
    emit(result, Path(args.json) if args.json else None)
    log(tables(result))
    return 0


def targets(result: dict[str, Any]) -> dict[str, Any]:
    t: dict[str, Any] = {}
    st = result.get("speech_text")
    if st:
        ci, cm = ratio(st, "cider"), ratio(st, "cmarr")
        t["cider_auilc_ratio"] = ci.get("of_means")
        t["cmarr_auilc_ratio"] = cm.get("of_means")
        t["cider_auilc_ratio_per_seed"] = ci.get("per_seed")
        t["cmarr_auilc_ratio_per_seed"] = cm.get("per_seed")
        t["cider_auilc_uar_ratio"] = ratio(st, "cider", "auilc_uar").get("of_means")
        s = st["summary"]
        if "cider+rmfm" in s and "cmarr" in s:
            t["epoch_time_ratio_cider_over_cmarr"] = (
                s["cider+rmfm"]["sec_per_epoch"]["mean"] / s["cmarr"]["sec_per_epoch"]["mean"]
            )
            t["auilc_cider_rmfm_minus_cmarr"] = (
                s["cider+rmfm"]["auilc_rmfm"]["mean"] - s["cmarr"]["auilc_rmfm"]["mean"]
            )
        if "cider" in s and "cmarr" in s:
            t["epoch_time_ratio_plain"] = (
                s["cider"]["sec_per_epoch"]["mean"] / s["cmarr"]["sec_per_epoch"]["mean"]
            )
        if "cider+rmfm" in s and "cmarr+rmfm" in s:
            t["epoch_time_ratio_rmfm"] = (
                s["cider+rmfm"]["sec_per_epoch"]["mean"] / s["cmarr+rmfm"]["sec_per_epoch"]["mean"]
            )
    maci = result.get("maci")
    if maci:
        for v in maci["iid"]["variants"]:
            g = maci_targets(maci, v)
            t[f"maci_ood_uar_gain_points_{v}"] = float(np.mean(g["ood"]))
            t[f"maci_iid_uar_change_points_{v}"] = float(np.mean(g["iid"]))
        main_v = (
            "cider+rmfm" if "cider+rmfm" in maci["iid"]["variants"] else next(iter(maci["iid"]["variants"]))
        )
        t["maci_ood_uar_gain_points"] = t[f"maci_ood_uar_gain_points_{main_v}"]
        t["maci_iid_uar_change_points"] = t[f"maci_iid_uar_change_points_{main_v}"]
        t["maci_variant"] = main_v
    goals = {
        "cider_auilc_ratio": (">=", 1.05),
        "maci_ood_uar_gain_points": (">=", 1.0),
        "maci_iid_uar_change_points": (">=", -1.0),
        "epoch_time_ratio_cider_over_cmarr": ("<=", 0.5),
    }
    t["met"] = {
        k: (t[k] >= g if op == ">=" else t[k] <= g) for k, (op, g) in goals.items() if t.get(k) is not None
    }
    return t


def tables(result: dict[str, Any]) -> str:
    lines = []
    for corpus in ("speech_text", "meld_text"):
        if corpus not in result:
            continue
        lines += [
            f"\n{corpus} (test): mean over seeds",
            "| variant | params | s/epoch | UAR | WAR | AUILC rmfm | rmfm_same | rmm | tmfm | stmfm "
            "| SMM avg UAR |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for v, r in result[corpus]["summary"].items():
            a = " | ".join(f"{r[f'auilc_{m}']['mean']:.3f}" if f"auilc_{m}" in r else "-" for m in RATE_MODES)
            smm = f"{r['smm_avg_uar']['mean']:.3f}" if "smm_avg_uar" in r else "-"
            lines.append(
                f"| {v} | {r['parameters']} | {r['sec_per_epoch']['mean']:.2f} | {r['test_uar']['mean']:.3f} "
                f"± {r['test_uar']['sd']:.3f} | {r['test_war']['mean']:.3f} | {a} | {smm} |"
            )
    if "maci" in result:
        lines += [
            "\nMACI on MELD (test UAR; mean over seeds)",
            "| split | variant | plain | backdoor only | MACI | tau |",
            "|---|---|---|---|---|---|",
        ]
        for split, block in result["maci"].items():
            for v, runs in block["variants"].items():
                m = {k: np.mean([r["test"][k]["uar"] for r in runs]) for k in ("plain", "backdoor", "maci")}
                taus = ",".join(str(r["tau"]) for r in runs)
                lines.append(
                    f"| {split} | {v} | {m['plain']:.3f} | {m['backdoor']:.3f} | {m['maci']:.3f} | {taus} |"
                )
    lines.append("\ntargets: " + json.dumps(result["targets"], default=str))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
