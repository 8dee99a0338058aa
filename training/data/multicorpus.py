"""A multi-corpus feature store -> speaker-independent train / validation / test splits.

Every utterance of the store records its corpus, speaker and official split (``training.data.extract``).

* A corpus with official splits (MELD: train/dev/test; FER2013: Training/PublicTest/PrivateTest) keeps
  them.
* Any other corpus (RAVDESS, EmoDB, ...) is split by speaker: ``data.test_speakers`` go to test (the
  leave-speakers-out folds of ``python -m training.cv``), and about ``data.val_fraction`` of the remaining
  speakers of each corpus go to validation (seeded by ``data.split_seed``). No speaker is on two sides.
* ``data.eval_only`` corpora (the CREMA-D clips by default) go to test only: never trained on, never
  used to select a model.

Every sample keeps exactly the modalities it has; the training sampler draws corpora by
``data.corpora`` weights and, within a corpus, every class equally often (``data.balance_classes``).

``FacePairing`` is the documented switch ``data.pair_faces``: a training sample that has speech but no
video gets, with that probability, the video of a random face-only sample (a still from FER2013) of
the same label, re-drawn every epoch.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from models.labels import normalise_label
from models.modalities import MODALITIES
from training.config import DataConfig
from training.data.dataset import DataSplits, NoTrainingData, Sample
from training.data.store_dataset import _load_from_store

OFFICIAL_SPLITS = {"train": "train", "val": "val", "dev": "val", "test": "test"}


def _speaker_split(speakers: list[str], val_fraction: float, seed: int, corpus: str) -> set[str]:
    """Validation speakers of one corpus: a seeded ~val_fraction of them (at least one, never all)."""
    if len(speakers) < 2:
        return set()
    order = np.random.default_rng([seed, len(corpus), *corpus.encode()]).permutation(len(speakers))
    n_val = min(len(speakers) - 1, max(1, int(round(val_fraction * len(speakers)))))
    return {speakers[int(i)] for i in order[:n_val]}


def assign_splits(metas: dict[str, dict[str, Any]], data: DataConfig) -> dict[str, str]:
    """utterance id -> "train" | "val" | "test" (ids left out are not used)."""
    by_corpus: dict[str, list[str]] = defaultdict(list)
    for uid, meta in metas.items():
        by_corpus[str(meta.get("corpus") or "")].append(uid)
    test_speakers = set(data.test_speakers)
    out: dict[str, str] = {}
    for corpus, uids in sorted(by_corpus.items()):
        if corpus in data.eval_only:
            out.update(dict.fromkeys(uids, "test"))
            continue
        official = {uid: OFFICIAL_SPLITS.get(str(metas[uid].get("split") or "")) for uid in uids}
        if all(official.values()):
            for uid in uids:
                held = metas[uid].get("speaker") in test_speakers
                out[uid] = "test" if held else str(official[uid])
            continue
        speakers = sorted({str(metas[u].get("speaker")) for u in uids} - test_speakers)
        val = _speaker_split(speakers, data.val_fraction, data.split_seed, corpus)
        for uid in uids:
            spk = str(metas[uid].get("speaker"))
            out[uid] = "test" if spk in test_speakers else ("val" if spk in val else "train")
    return out


def drawing_weights(samples: list[Sample], data: DataConfig, num_classes: int) -> list[float]:
    """Per-sample weights: each corpus gets its ``data.corpora`` weight (1 when unlisted), shared equally
    by its classes when ``balance_classes`` (else by its samples)."""
    counts: dict[tuple[str, int], int] = defaultdict(int)
    per_corpus: dict[str, int] = defaultdict(int)
    for s in samples:
        counts[(s.corpus, s.label)] += 1
        per_corpus[s.corpus] += 1
    classes = {c: sum(1 for k in counts if k[0] == c) for c in per_corpus}
    out = []
    for s in samples:
        w = float(data.corpora.get(s.corpus, 1.0)) if data.corpora else 1.0
        if data.balance_classes:
            out.append(w / (classes[s.corpus] * counts[(s.corpus, s.label)]))
        else:
            out.append(w / per_corpus[s.corpus])
    return out


def no_utterance_message(
    root: str, data: DataConfig, off_recipe: Counter[str], off_classes: Counter[str]
) -> str:
    """Why a store gave nothing to train on: how many utterances each filter dropped, and of what."""

    def listed(c: Counter[str]) -> str:
        return ", ".join(f"{k}: {n}" for k, n in sorted(c.items()))

    parts = []
    if off_recipe:
        parts.append(
            f"{sum(off_recipe.values())} dropped by data.corpora, which lists {sorted(data.corpora)} "
            f"(the store's: {listed(off_recipe)}); add the corpus there (your own clips: "
            "configs/train/cmarr_own_data.yaml)"
        )
    if off_classes:
        parts.append(
            f"{sum(off_classes.values())} dropped because their label is not one of {list(data.classes)} "
            f"({listed(off_classes)}); map labels with data.label_map"
        )
    why = "; ".join(parts) if parts else "the store is empty"
    return f"feature store {root} holds no utterance to train on: {why}"


def multicorpus_splits(data: DataConfig) -> DataSplits:
    from training.data.feature_store import FeatureStore

    store = FeatureStore(data.root)
    dims = store.dims
    if [m for m in MODALITIES if m not in dims]:
        raise ValueError(f"feature store {data.root} manifest lacks dims for some modality (dims: {dims})")
    metas, labels = _recipe_utterances(store, data)
    where = assign_splits(metas, data)
    parts: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    for uid, split in where.items():
        meta = metas[uid]
        parts[split].append(
            Sample(
                id=uid,
                group=str(meta.get("group", "")),
                label=labels[uid],
                speaker=str(meta.get("speaker", "")),
                loader=partial(_load_from_store, store, uid, dims, data.mask_invalid_frames),
                corpus=str(meta.get("corpus") or ""),
                lengths=store.lengths(uid),
            )
        )
    for v in parts.values():
        v.sort(key=lambda s: s.id)
    desc = {
        "source": "multi",
        "store_manifest": store.manifest,
        "val_rule": "official splits where defined, else whole speakers per corpus",
        "val_fraction": data.val_fraction,
        "split_seed": data.split_seed,
        "test_speakers": list(data.test_speakers),
        "eval_only": list(data.eval_only),
        "counts": {k: _corpus_counts(v, len(data.classes)) for k, v in parts.items()},
    }
    return DataSplits(
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        dims=dims,
        class_names=tuple(data.classes),
        description=desc,
        train_weights=drawing_weights(parts["train"], data, len(data.classes)),
    )


def _recipe_utterances(store: Any, data: DataConfig) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """The stored utterances the recipe trains or tests on (its corpora, its classes after
    ``data.label_map``): metadata and class index by id. None left: ``NoTrainingData`` says what each
    filter dropped."""
    index = {c: i for i, c in enumerate(data.classes)}
    label_map = {normalise_label(k): normalise_label(v) for k, v in data.label_map.items()}
    metas: dict[str, dict[str, Any]] = {}
    labels: dict[str, int] = {}
    off_recipe: Counter[str] = Counter()  # corpus -> utterances data.corpora leaves out
    off_classes: Counter[str] = Counter()  # label -> utterances whose label is not a class
    for uid in store.ids():
        meta = store.meta(uid)
        corpus = str(meta.get("corpus") or "")
        if data.corpora and corpus not in data.corpora and corpus not in data.eval_only:
            off_recipe[corpus or "(unnamed)"] += 1
            continue
        lab = normalise_label(meta.get("label"))
        lab = label_map.get(lab, lab)
        if lab not in index:
            off_classes[str(lab)] += 1
            continue
        metas[uid], labels[uid] = meta, index[lab]
    if not metas:
        raise NoTrainingData(no_utterance_message(str(data.root), data, off_recipe, off_classes))
    return metas, labels


def _corpus_counts(samples: list[Sample], num_classes: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for s in samples:
        out.setdefault(s.corpus, [0] * num_classes)[s.label] += 1
    return out


def modality_set(s: Sample) -> str:
    """The stored modalities of a sample as a condition name ("ta", "v", "t", ...)."""
    lens = s.lengths or {}
    return "".join(m[0] for m in MODALITIES if lens.get(m, 0) > 0)


class FacePairing:
    """Give speech-without-video samples the video of a same-label face-only sample (``data.pair_faces``).

    Deterministic in (seed, epoch, index): an interrupted run resumes with the same pairs. ``always``
    pairs every eligible sample (the paired validation set).
    """

    def __init__(self, faces: list[Sample], probability: float, seed: int, always: bool = False) -> None:
        self.by_label: dict[int, list[Sample]] = defaultdict(list)
        for f in faces:
            self.by_label[f.label].append(f)
        self.probability = 1.0 if always else probability
        self.seed = seed
        self.fixed_epoch = 0 if always else None

    @staticmethod
    def eligible(s: Sample) -> bool:
        lens = s.lengths or {}
        return lens.get("audio", 0) > 0 and lens.get("video", 0) == 0

    @staticmethod
    def is_face(s: Sample) -> bool:
        lens = s.lengths or {}
        return lens.get("video", 0) > 0 and lens.get("audio", 0) == 0 and lens.get("text", 0) == 0

    def partner(self, s: Sample, index: int, epoch: int) -> Sample | None:
        pool = self.by_label.get(s.label)
        if not pool or not self.eligible(s):
            return None
        e = epoch if self.fixed_epoch is None else self.fixed_epoch
        rng = np.random.default_rng([self.seed, e, index])
        if rng.random() >= self.probability:
            return None
        return pool[int(rng.integers(len(pool)))]

    def __call__(
        self, s: Sample, index: int, epoch: int, feats: dict[str, np.ndarray], valid: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        face = self.partner(s, index, epoch)
        if face is None:
            return feats, valid
        f_feats, f_valid = face.load()
        return {**feats, "video": f_feats["video"]}, {**valid, "video": f_valid["video"]}


class TemporalCrop:
    """With probability ``p``, keep a random contiguous span of at least ``min_frames`` frames of one
    modality: the engine fuses windows that often hold only part of an utterance (the first windows of a
    stream are 1 and 2 s long). Deterministic in (seed, epoch, index)."""

    def __init__(self, modality: str, min_frames: int, p: float, seed: int) -> None:
        self.modality, self.min_frames, self.p, self.seed = modality, min_frames, p, seed

    def __call__(
        self, s: Sample, index: int, epoch: int, feats: dict[str, np.ndarray], valid: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        x = feats[self.modality]
        n = len(x)
        rng = np.random.default_rng([self.seed, 7, epoch, index])
        if n <= self.min_frames or rng.random() >= self.p:
            return feats, valid
        length = int(rng.integers(self.min_frames, n + 1))
        start = int(rng.integers(0, n - length + 1))
        sl = slice(start, start + length)
        return {**feats, self.modality: x[sl]}, {**valid, self.modality: valid[self.modality][sl]}


class Compose:
    def __init__(self, *steps: Any) -> None:
        self.steps = [s for s in steps if s is not None]

    def __call__(
        self, s: Sample, index: int, epoch: int, feats: dict[str, np.ndarray], valid: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        for step in self.steps:
            feats, valid = step(s, index, epoch, feats, valid)
        return feats, valid


def face_samples(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if FacePairing.is_face(s)]


def store_root_name(root: str | Path) -> str:
    return Path(root).name
