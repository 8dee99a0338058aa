"""Evaluation on naturally incomplete data: per corpus, under the availability conditions it can have.

A RAVDESS utterance has text (from ASR) and speech but no video, a MELD one has text only, a FER2013
one a face only. So a condition is scored for a corpus only on samples that have every modality it
uses: RAVDESS under {t, a, ta}, MELD under {t}, FER2013 under {v}, and the CREMA-D clips under all
seven. When face pairing is on, a "<corpus>+face" entry scores speech samples paired (deterministically)
with held-out faces of the same label under the conditions that need the face.

The report has one entry per (corpus, condition), named ``<corpus>.<condition>``. Model selection uses
the mean UAR over each corpus's *natural* condition (everything it has) plus the paired full condition:
the situations the engine meets.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from models.metrics import Metrics, classification_metrics
from models.modalities import CONDITIONS, MODALITIES
from training.data.dataset import FeatureDataset, Normalizer, Sample, batch_to, collate
from training.data.multicorpus import FacePairing, face_samples, modality_set
from training.loop.adapters import ModelAdapter

PAIRED_SUFFIX = "+face"
PAIRED_CONDITIONS = ("av", "tav")


def conditions_within(present: str) -> list[str]:
    """Every non-empty condition using only modalities in ``present`` (e.g. "ta" -> t, a, ta)."""
    letters = [m[0] for m in MODALITIES if m[0] in present]
    out = ["".join(c) for k in range(1, len(letters) + 1) for c in combinations(letters, k)]
    return [c for c in CONDITIONS if c in out]


@dataclass
class Scored:
    """Predictions of one evaluation set under one condition."""

    y: np.ndarray  # [N] class index
    logits: np.ndarray  # [N, C]


@dataclass
class NaturalReport:
    class_names: tuple[str, ...]
    per_condition: dict[str, Metrics]  # "<corpus>.<condition>" -> metrics
    natural: list[str]  # the entries that model selection averages
    scored: dict[str, Scored] = field(default_factory=dict)  # raw logits (calibration, ECE)
    datasets: dict[str, FeatureDataset] = field(default_factory=dict)  # what each entry scored

    def mean_all(self) -> dict[str, float]:
        keys = self.natural or list(self.per_condition)
        return {
            "uar": float(np.mean([self.per_condition[k].uar for k in keys])),
            "war": float(np.mean([self.per_condition[k].war for k in keys])),
        }

    def mean_missing(self) -> dict[str, float]:
        return {}

    def selection_value(self, name: str) -> float:
        if name in ("uar_mean_all", "uar_mean_natural", "uar_mean_missing", "uar_full"):
            return self.mean_all()["uar"]
        if name == "war_full":
            return self.mean_all()["war"]
        raise ValueError(f"unknown selection metric {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_names": list(self.class_names),
            "conditions": {k: m.to_dict() for k, m in self.per_condition.items()},
            "natural": self.natural,
            "mean_natural": {"definition": "mean over each corpus's natural condition", **self.mean_all()},
        }


@torch.no_grad()
def _logits(
    model: torch.nn.Module, adapter: ModelAdapter, ds: FeatureDataset, mask: tuple[int, int, int], device: Any
) -> Scored:
    was = model.training
    model.eval()
    ys, outs = [], []
    for batch in DataLoader(ds, batch_size=64, shuffle=False, collate_fn=collate):
        batch = batch_to(batch, device)
        batch["avail"] = torch.tensor(mask, dtype=torch.float32, device=device).repeat(len(batch["label"]), 1)
        outs.append(adapter.logits(adapter.forward(model, batch)).float().cpu())
        ys.append(batch["label"].cpu())
    model.train(was)
    return Scored(torch.cat(ys).numpy(), torch.cat(outs).numpy())


def evaluate_natural(  # noqa: C901 - one branch per kind of entry
    model: torch.nn.Module,
    adapter: ModelAdapter,
    samples: list[Sample],
    dims: dict[str, int],
    normalizer: Normalizer,
    class_names: tuple[str, ...],
    device: Any,
    max_len: dict[str, int] | None = None,
    pair_seed: int | None = 0,
) -> NaturalReport:
    """Score every corpus under the conditions its samples can have (see the module docstring)."""
    groups: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for s in samples:
        groups[(s.corpus, modality_set(s))].append(s)
    per: dict[str, Metrics] = {}
    scored: dict[str, Scored] = {}
    datasets: dict[str, FeatureDataset] = {}
    natural: list[str] = []
    by_corpus: dict[str, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for (corpus, present), ss in groups.items():
        if not present:
            continue
        for cond in conditions_within(present):
            by_corpus[corpus][cond].extend(ss)
    faces = face_samples(samples)
    for corpus in sorted(by_corpus):
        conds = by_corpus[corpus]
        full = max(conds, key=lambda c: (len(c), len(conds[c])))  # everything the corpus has
        for cond, ss in conds.items():
            key = f"{corpus}.{cond}"
            datasets[key] = FeatureDataset(ss, dims, normalizer, max_len)
            scored[key] = _logits(model, adapter, datasets[key], CONDITIONS[cond], device)
            per[key] = classification_metrics(scored[key].y, scored[key].logits.argmax(1), len(class_names))
            if cond == full:
                natural.append(key)
        speech = [s for s in conds.get("a", []) if FacePairing.eligible(s)]
        if pair_seed is None or not faces or not speech:
            continue
        pairing = FacePairing(faces, 1.0, pair_seed, always=True)
        sets = {"av": speech, "tav": [s for s in speech if "t" in modality_set(s)]}
        for cond in PAIRED_CONDITIONS:
            ss = [s for s in sets[cond] if s.label in pairing.by_label]
            if not ss:
                continue
            key = f"{corpus}{PAIRED_SUFFIX}.{cond}"
            datasets[key] = FeatureDataset(ss, dims, normalizer, max_len, transform=pairing)
            scored[key] = _logits(model, adapter, datasets[key], CONDITIONS[cond], device)
            per[key] = classification_metrics(scored[key].y, scored[key].logits.argmax(1), len(class_names))
        natural.append(f"{corpus}{PAIRED_SUFFIX}.tav")
    natural = [k for k in natural if k in per]
    return NaturalReport(tuple(class_names), per, natural, scored, datasets)
