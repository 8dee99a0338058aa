"""The speech expert's calibration on speakers it never heard, measured on enough of them.

The recipe fits the speech head's temperature on its validation speakers (RAVDESS 140 clips, EmoDB 61), a
size at which a perfectly calibrated model reads an ECE of 0.07-0.13 from sampling alone
(``models.metrics.calibration_check``). Here every speech utterance is read once by a head that never
heard its speaker, each head fitted exactly as the recipe fits it (``training.fit.experts.fit_head``: C
chosen and temperature fitted on its own validation speakers):

* **out of fold**: the leave-speakers-out folds of ``training.recipe.reproduce`` (every speaker tested once);
* **across corpora**: a head fitted on one corpus's speakers reads every speaker of the other corpus
  (a new corpus: other people, another language or recording room, as a user's calls are).

Three temperatures are compared on the same readings:

* ``none``: T = 1 (the logistic regression as fitted);
* ``val``: the recipe's, fitted on the head's own validation speakers;
* ``pooled``: fitted on the pooled out-of-fold logits of the *other* folds (cross-validated, so no
  fold's temperature saw its own speakers): what a temperature fitted on every held-out speaker gives.

    python -m training.speech_calibration --store runs/offline-v3/features --json speech_calibration.json

Prints one JSON report: per setting and temperature, UAR, ECE with its sampling floor, NLL and n.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from models.metrics import classification_metrics
from training.fit.calibrate import ece_entry, fit_temperature, log_softmax, softmax
from training.fit.experts import fit_head, pooled
from training.recipe import CONFIG, SPEAKER_CORPORA, speaker_folds

SPEECH = ("audio", "mean_std")


def _readings(head: Any, samples: list) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Raw logits [N, C], labels [N] and corpus per sample, for the samples with speech."""
    x, y, idx = pooled(samples, *SPEECH)
    if not len(y):
        return np.zeros((0, head.weight.shape[0])), y, []
    return head.logits(x), y, [samples[i].corpus for i in idx]


def score(z: np.ndarray, y: np.ndarray, t: float | None, num_classes: int) -> dict[str, Any]:
    """UAR, ECE (with its sampling floor) and mean NLL of softmax(z / t); ``t`` None: ``z`` is already
    scaled (a temperature per fold), so no single temperature is reported."""
    scaled = z if t is None else z / t
    p = softmax(scaled)
    nll = float(-log_softmax(scaled)[np.arange(len(y)), y].mean())
    return {
        "n": int(len(y)),
        **({} if t is None else {"temperature": round(float(t), 4)}),
        "uar": round(classification_metrics(y, p.argmax(1), num_classes).uar, 4),
        **ece_entry(p, y),
        "nll": round(nll, 4),
        "mean_top_prob": round(float(p.max(1).mean()), 4),
    }


def out_of_fold(cfg_for: Any, folds: list[list[str]], corpora: tuple[str, ...]) -> dict[str, Any]:
    """Every speech utterance of ``corpora`` read by the head of the fold that held its speaker out."""
    from training.data.multicorpus import multicorpus_splits

    parts = []
    for i, speakers in enumerate(folds):
        splits = multicorpus_splits(cfg_for(speakers).data)
        num_classes = len(splits.class_names)
        fitted = fit_head("speech", splits.train, splits.val, num_classes)
        if fitted is None:
            raise ValueError(f"fold {i}: no speech head (a class has no training sample)")
        test = [s for s in splits.test if s.corpus in corpora]
        z, y, corpus = _readings(fitted.head, test)
        parts.append({"fold": i, "z": z, "y": y, "corpus": corpus, "t_val": fitted.head.temperature,
                      "c": fitted.c})
    num_classes = parts[0]["z"].shape[1]
    # The pooled temperature of fold i: fitted on the raw logits of every other fold.
    for i, part in enumerate(parts):
        others = [p for j, p in enumerate(parts) if j != i and len(p["y"])]
        part["t_pooled"] = fit_temperature([np.concatenate([p["z"] for p in others])],
                                           [np.concatenate([p["y"] for p in others])])
    out: dict[str, Any] = {"folds": [{"fold": p["fold"], "n": int(len(p["y"])), "C": p["c"],
                                      "t_val": round(p["t_val"], 4), "t_pooled": round(p["t_pooled"], 4)}
                                     for p in parts]}
    for which in [*corpora, "all"]:
        sel = [(p, np.array([which in ("all", c) for c in p["corpus"]], bool)) for p in parts]
        z = np.concatenate([p["z"][m] for p, m in sel])
        y = np.concatenate([p["y"][m] for p, m in sel])
        if not len(y):
            continue  # a speech corpus the store does not hold
        out[which] = {
            "none": score(z, y, 1.0, num_classes),
            **{key: score(np.concatenate([p["z"][m] / p[f"t_{key}"] for p, m in sel]), y, None, num_classes)
               for key in ("val", "pooled")},
        }
        out[which]["pooled_on_itself"] = score(z, y, fit_temperature([z], [y]), num_classes)  # the floor T
    return out


def across_corpora(cfg: Any, corpora: tuple[str, ...], eval_only: str = "cremad") -> dict[str, Any]:
    """A head fitted on one corpus's train/validation speakers reads every speaker of each other corpus;
    the head fitted on all of them (the recipe's) reads the test-only corpus."""
    from training.data.multicorpus import multicorpus_splits

    splits = multicorpus_splits(cfg.data)
    num_classes = len(splits.class_names)
    every = splits.train + splits.val + splits.test
    out: dict[str, Any] = {}
    for source in corpora:
        train = [s for s in splits.train if s.corpus == source]
        val = [s for s in splits.val if s.corpus == source]
        fitted = fit_head("speech", train, val, num_classes)
        if fitted is None:
            continue
        t = fitted.head.temperature
        for target in [c for c in corpora if c != source]:
            z, y, _ = _readings(fitted.head, [s for s in every if s.corpus == target])
            if not len(y):
                continue
            out[f"{source}->{target}"] = {
                "none": score(z, y, 1.0, num_classes),
                "val": score(z, y, t, num_classes),
                "fitted_on_target": score(z, y, fit_temperature([z], [y]), num_classes),
            }
    fitted = fit_head("speech", splits.train, splits.val, num_classes)
    if fitted is not None:
        z, y, _ = _readings(fitted.head, [s for s in splits.test if s.corpus == eval_only])
        if len(y):  # report only: a test-only corpus never chooses anything
            out[f"recipe->{eval_only} (test only)"] = {
                "none": score(z, y, 1.0, num_classes),
                "val": score(z, y, fitted.head.temperature, num_classes),
            }
    return out


def speech_calibration(store: Path, config: Path, folds: list[list[str]]) -> dict[str, Any]:
    """Both measurements on ``store`` under the recipe ``config`` and the given speaker folds."""
    from training.loop.train import load_train_config

    def cfg_for(speakers: list[str]) -> Any:
        return load_train_config(config, [f"data.test_speakers={json.dumps(speakers)}"], root=str(store))

    return {
        "out_of_fold": out_of_fold(cfg_for, folds, SPEAKER_CORPORA),
        "across_corpora": across_corpora(cfg_for([]), SPEAKER_CORPORA),
    }


def main(argv: list[str] | None = None) -> int:

    ap = argparse.ArgumentParser(
        prog="python -m training.speech_calibration", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--store", required=True, type=Path, help="feature store with the speech corpora")
    ap.add_argument("--config", type=Path, default=CONFIG, help="train recipe (default: the shipped one)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = ap.parse_args(argv)
    if not (args.store / "index.json").is_file():
        print(f"error: {args.store} is not a feature store (no index.json); "
              "build it with python -m training.extract",
              file=sys.stderr)
        return 2
    folds = speaker_folds(args.store, args.folds)
    report = {"store": str(args.store), **speech_calibration(args.store, args.config, folds)}
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0
