"""CIDer vs CM-ARR on the real MOSI three-modality features: RMFM training, MACI, IID/OOD, AUILC.

    python -m benchmarks.cider_mosi --data data/mosi-trimodal --json out.json [--epochs 20] [--plot out.png]

For each split (IID: the official speaker-independent split; OOD:
``training.evaluation.ood.ood_split``) it trains four variants with the same optimiser, batch size and
epoch budget, selecting the epoch by validation accuracy (validation carved from train by whole videos):

* ``cmarr``        CM-ARR with its own recipe (a random one of the 7 availability conditions per sample)
* ``cmarr+rmfm``   CM-ARR with RMFM masks and MSSD (``training.loop.mssd.CMARRMSSDAdapter``)
* ``cider``        CIDer on complete inputs, cross-entropy only
* ``cider+rmfm``   CIDer with RMFM masks and MSSD (``training.loop.mssd.CIDerAdapter``)

Then, per variant: test accuracy on complete inputs; the RMFM sweep r = 0.0..1.0 on test and its AUILC;
MACI plugged onto the frozen model (MCM head trained on training representations, bias words from the
training transcripts, tau chosen on validation) and its test accuracy; parameter count; training
seconds per epoch (median over epochs, measured in this run, training steps only). Prints one JSON
object (also written to --json) and a markdown table on stderr.

MOSI has ONE vector per modality per utterance (L = 1), so an RMFM draw drops whole modalities, and
feature-level text has no tokens: a dropped "token" is a zero vector, and the counterfactual text of
MACI is the bias-words-only transcript embedded by a ridge map from word counts to the text features.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from models.cider import MACI, MACIConfig, select_bias_words
from models.config_io import to_dict
from models.modalities import MODALITIES
from training.data.conditions import ConditionSampler, MissingConfig
from training.data.dataset import FeatureDataset, Normalizer, Sample, collate
from training.data.mosi import load_mosi
from training.data.splits import grouped_split
from training.evaluation.ood import choose_tau, fit_text_proxy, load_transcripts, ood_split
from training.evaluation.robustness import plot_curves, sweep_predict
from training.loop.adapters import CMARRAdapter, ModelAdapter
from training.loop.mssd import CIDerAdapter, CMARRMSSDAdapter
from training.loop.variants import train_step

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("cmarr", "cmarr+rmfm", "cider", "cider+rmfm")


def as_batch(samples: Sequence[Sample], dims: dict[str, int], norm: Normalizer) -> dict[str, Any]:
    ds = FeatureDataset(samples, dims, norm)
    b = collate([ds[i] for i in range(len(ds))])
    b["avail"] = b["present"].clone()
    return b


def take(batch: dict[str, Any], idx: torch.Tensor) -> dict[str, Any]:
    out = {}
    for k, v in batch.items():
        out[k] = v[idx] if isinstance(v, torch.Tensor) else [v[int(i)] for i in idx]
    return out


def build(
    variant: str, dims: dict[str, int], classes: tuple[str, ...]
) -> tuple[ModelAdapter, torch.nn.Module]:
    if variant.startswith("cmarr"):
        section = yaml.safe_load((REPO / "configs/train/cmarr_mosi.yaml").read_text())["model"]
        adapter: ModelAdapter = CMARRMSSDAdapter() if variant.endswith("rmfm") else CMARRAdapter()
    else:
        section = yaml.safe_load((REPO / "configs/train/cider_mosi.yaml").read_text())["model"]
        section = {**section, "mssd": {**section.get("mssd", {}), "enabled": variant.endswith("rmfm")}}
        adapter = CIDerAdapter()
    cfg = adapter.make_config(section, dims, classes)
    return adapter, adapter.build(cfg)


@torch.no_grad()
def accuracy(adapter: ModelAdapter, model: torch.nn.Module, batch: dict[str, Any]) -> float:
    model.eval()
    logits = adapter.logits(adapter.forward(model, batch))
    return float((logits.argmax(-1) == batch["label"]).float().mean())


def train_variant(
    variant: str,
    adapter: ModelAdapter,
    model: torch.nn.Module,
    train: dict[str, Any],
    val: dict[str, Any],
    epochs: int,
    seed: int,
    batch_size: int = 32,
    lr: float = 1e-3,
) -> dict[str, Any]:
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    steps = epochs * int(np.ceil(len(train["label"]) / batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(s / steps, 1.0))))
    sampler = ConditionSampler(MissingConfig(mode="uniform"), seed=seed) if variant == "cmarr" else None
    n = len(train["label"])
    best, best_acc, best_epoch, times = None, -1.0, -1, []
    for epoch in range(epochs):
        torch.manual_seed(seed * 1000 + epoch)
        perm = torch.randperm(n)
        model.train()
        t0 = time.perf_counter()
        for i in range(0, n, batch_size):
            b = take(train, perm[i : i + batch_size])
            b["avail"] = sampler.sample(b["present"]) if sampler is not None else b["present"].clone()
            train_step(adapter, model, b, opt, sched)
        times.append(time.perf_counter() - t0)
        acc = accuracy(adapter, model, val)
        if acc > best_acc:
            best, best_acc, best_epoch = copy.deepcopy(model.state_dict()), acc, epoch
    model.load_state_dict(best)  # type: ignore[arg-type]
    model.eval()
    return {
        "val_accuracy": best_acc,
        "best_epoch": best_epoch + 1,
        "epochs": epochs,
        "sec_per_epoch": statistics.median(times),
        "sec_per_epoch_all": times,
    }


def forward_rep(
    model: torch.nn.Module,
    b: dict[str, Any],
    text: torch.Tensor | None = None,
    avail: torch.Tensor | None = None,
) -> torch.Tensor:
    t = b["text"] if text is None else text
    out = model(
        t,
        b["text_mask"],
        b["audio"],
        b["audio_mask"],
        b["video"],
        b["video_mask"],
        b["avail"] if avail is None else avail,
    )
    return out.representation


def run_maci(
    model: torch.nn.Module,
    splits: dict[str, dict[str, Any]],
    texts: dict[str, list[str]],
    classes: int,
    seed: int,
    head_epochs: int = 60,
) -> dict[str, Any]:
    """MACI on the frozen model: prototypes/prior and MCM head from train, tau from validation."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tr = splits["train"]
    with torch.no_grad():
        reps = {k: forward_rep(model, b) for k, b in splits.items()}
    maci = MACI(model, MACIConfig(rep_dim=reps["train"].shape[1], num_classes=classes))
    maci.set_statistics(reps["train"], tr["label"])
    torch.manual_seed(seed)
    opt = torch.optim.Adam([p for n, p in maci.named_parameters() if not n.startswith("base.")], lr=3e-3)
    n = len(tr["label"])
    for _ in range(head_epochs):
        maci.train()
        maci.base.eval()
        perm = torch.randperm(n)
        for i in range(0, n, 64):
            idx = perm[i : i + 64]
            loss = torch.nn.functional.nll_loss(maci.head_log_probs(reps["train"][idx]), tr["label"][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    maci.eval()
    bias = select_bias_words(texts["train"], tr["label"].tolist(), classes)
    proxy, r2 = fit_text_proxy(texts["train"], tr["text"][:, 0].numpy())
    keep = set(bias)
    out: dict[str, Any] = {"bias_words": bias[:30], "n_bias_words": len(bias), "text_proxy_r2_train": r2}
    scores = {}
    with torch.no_grad():
        for k in ("val", "test"):
            b = splits[k]
            cf = proxy(texts[k], keep).unsqueeze(1)  # [B, 1, D_t] bias-words-only text feature
            o = maci(
                b["text"],
                b["text_mask"],
                b["audio"],
                b["audio_mask"],
                b["video"],
                b["video_mask"],
                b["avail"],
                text_cf=cf,
            )
            scores[k] = (o.log_probs, o.cf_log_probs)
    tau, table = choose_tau(scores["val"][0], scores["val"][1], splits["val"]["label"])
    maci.config.tau = tau
    with torch.no_grad():
        b = splits["test"]
        o = maci(
            b["text"],
            b["text_mask"],
            b["audio"],
            b["audio_mask"],
            b["video"],
            b["video_mask"],
            b["avail"],
            text_cf=proxy(texts["test"], keep).unsqueeze(1),
        )
    y = b["label"]
    out.update(
        {
            "tau": tau,
            "val_accuracy_by_tau": table,
            "test_accuracy": float((o.logits.argmax(-1) == y).float().mean()),
            "test_accuracy_backdoor_only": float((o.log_probs.argmax(-1) == y).float().mean()),
            "extra_parameters": sum(
                p.numel() for n_, p in maci.named_parameters() if not n_.startswith("base.")
            ),
        }
    )
    for p in model.parameters():
        p.requires_grad_(True)
    return out


def run_split(
    name: str,
    train_s: list[Sample],
    val_s: list[Sample],
    test_s: list[Sample],
    dims: dict[str, int],
    classes: tuple[str, ...],
    transcripts: dict[str, str],
    epochs: int,
    seed: int,
    variants: Sequence[str],
) -> dict[str, Any]:
    norm = Normalizer.fit(train_s, dims)
    splits = {k: as_batch(s, dims, norm) for k, s in (("train", train_s), ("val", val_s), ("test", test_s))}
    texts = {k: [transcripts[i] for i in splits[k]["id"]] for k in splits}
    res: dict[str, Any] = {
        "n": {k: len(v["label"]) for k, v in splits.items()},
        "positive_rate": {k: float(v["label"].float().mean()) for k, v in splits.items()},
        "variants": {},
    }
    curves = []
    for v in variants:
        torch.manual_seed(seed)
        adapter, model = build(v, dims, classes)
        print(
            f"[{name}] training {v} ({sum(p.numel() for p in model.parameters())} parameters)",
            file=sys.stderr,
        )
        tr = train_variant(v, adapter, model, splits["train"], splits["val"], epochs, seed)
        test_acc = accuracy(adapter, model, splits["test"])

        def predict(
            b: dict[str, Any], adapter: ModelAdapter = adapter, model: torch.nn.Module = model
        ) -> torch.Tensor:
            return adapter.logits(adapter.forward(model, b))

        sw = sweep_predict(
            predict, [splits["test"]], len(classes), mode="rmfm", seed=seed, label=f"{v} ({name})"
        )
        curves.append(sw)
        maci = run_maci(model, splits, texts, len(classes), seed)
        res["variants"][v] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            **tr,
            "model_config": to_dict(model.config),
            "test_accuracy": test_acc,
            "rmfm_curve": sw.accuracy,
            "auilc": sw.auilc,
            "maci": maci,
        }
    res["_curves"] = curves
    return res


def targets(result: dict[str, Any]) -> dict[str, Any]:
    iid, ood = result["iid"]["variants"], result["ood"]["variants"]
    t: dict[str, Any] = {}
    for m in ("cmarr", "cider"):
        if m in iid and f"{m}+rmfm" in iid:
            t[f"{m}_auilc_ratio_iid"] = iid[f"{m}+rmfm"]["auilc"] / iid[m]["auilc"]
        if m in ood and f"{m}+rmfm" in ood:
            t[f"{m}_auilc_ratio_ood"] = ood[f"{m}+rmfm"]["auilc"] / ood[m]["auilc"]
    for v in iid:
        if v in ood:
            t[f"{v}_maci_ood_gain_points"] = 100 * (ood[v]["maci"]["test_accuracy"] - ood[v]["test_accuracy"])
            t[f"{v}_maci_iid_change_points"] = 100 * (
                iid[v]["maci"]["test_accuracy"] - iid[v]["test_accuracy"]
            )
    for suffix in ("", "+rmfm"):
        a, b = iid.get("cider" + suffix), iid.get("cmarr" + suffix)
        if a and b:
            t[f"params_ratio_cider_over_cmarr{suffix}"] = a["parameters"] / b["parameters"]
            t[f"epoch_time_ratio_cider_over_cmarr{suffix}"] = a["sec_per_epoch"] / b["sec_per_epoch"]
    return t


def table(result: dict[str, Any]) -> str:
    lines = [
        "| split | variant | params | s/epoch | acc | acc+MACI (tau) | AUILC |",
        "|---|---|---|---|---|---|---|",
    ]
    for split in ("iid", "ood"):
        for v, r in result[split]["variants"].items():
            lines.append(
                f"| {split} | {v} | {r['parameters']} | {r['sec_per_epoch']:.2f} | "
                f"{100 * r['test_accuracy']:.2f} | {100 * r['maci']['test_accuracy']:.2f} "
                f"({r['maci']['tau']}) | {r['auilc']:.4f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cider_mosi", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/mosi-trimodal")
    ap.add_argument("--json", default=None)
    ap.add_argument("--plot", default=None, help="PNG of the RMFM accuracy-vs-rate curves")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 avoids spin-wait on a busy machine)"
    )
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--splits", default="iid,ood")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown variants {bad}; known: {VARIANTS}")
    data = load_mosi(args.data, val_fraction=0.2, seed=args.seed)
    transcripts = load_transcripts(args.data)
    dims, classes = data.dims, tuple(data.class_names)
    result: dict[str, Any] = {
        "benchmark": "cider_mosi",
        "epochs": args.epochs,
        "seed": args.seed,
        "threads": args.threads,
        "torch": torch.__version__,
    }
    t0 = time.perf_counter()
    if "iid" in args.splits:
        result["iid"] = run_split(
            "iid",
            data.train,
            data.val,
            data.test,
            dims,
            classes,
            transcripts,
            args.epochs,
            args.seed,
            variants,
        )
    if "ood" in args.splits:
        pooled = data.train + data.val + data.test
        official_test = {s.group for s in data.test}
        o = ood_split(pooled, transcripts, test_fraction=0.5, test_pool=official_test)
        # Validation: whole official-test videos that went to OOD train (train-split features are near
        # separable on held-out train videos, so a validation made of them cannot rank models).
        moved = [s for s in o.train if s.group in official_test]
        rest = [s for s in o.train if s.group not in official_test]
        keep, va = grouped_split(moved, 0.5, args.seed)
        tr = rest + keep
        result["ood_split"] = {k: v for k, v in o.description.items() if k != "test_groups"}
        result["ood"] = run_split(
            "ood", tr, va, o.test, dims, classes, transcripts, args.epochs, args.seed, variants
        )
    curves = [c for s in ("iid", "ood") if s in result for c in result[s].pop("_curves")]
    if args.plot and curves:
        result["plot"] = str(plot_curves(curves, args.plot, title="MOSI test: accuracy vs RMFM rate"))
    if "iid" in result and "ood" in result:
        result["targets"] = targets(result)
        print(table(result), file=sys.stderr)
    result["wall_seconds"] = time.perf_counter() - t0
    result["modalities"] = list(MODALITIES)
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
