"""Feature store (written by ``training.data.extract``) -> the same ``Sample``s as every other source.

Features are read lazily, one utterance at a time, so a corpus larger than memory trains fine.
Per-frame presence (e.g. False where no face was found) becomes the validity mask; a modality with no
valid frame counts as not present for that utterance. Folds are the store's ``group`` metadata
(IEMOCAP sessions, MSP-IMPROV sessions).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from models.modalities import MODALITIES
from training.data.corpus import normalise_label
from training.data.dataset import DataSplits, NoTrainingData, Sample
from training.data.splits import grouped_split, stratified_split


def _load_from_store(
    store: Any, utt_id: str, dims: dict[str, int], mask_invalid: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    u = store.get(utt_id)
    feats: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    for m in MODALITIES:
        x = u.features.get(m)
        x = np.zeros((0, dims[m]), np.float32) if x is None else np.asarray(x, np.float32)
        p = u.presence.get(m)
        p = np.ones(len(x), bool) if p is None or not mask_invalid else np.asarray(p, bool)
        feats[m], valid[m] = x, p
    return feats, valid


def store_samples(
    root: str | Path, class_names: tuple[str, ...], mask_invalid: bool = True, keep_unlabelled: bool = False
) -> tuple[list[Sample], dict[str, int], dict[str, Any]]:
    """All utterances of a store whose label is one of ``class_names`` (labels normalised, so 'exc' in
    a store counts as 'hap'). Returns (samples, dims per modality, manifest)."""
    from training.data.feature_store import FeatureStore  # the extractor's module; imported on use

    store = FeatureStore(root)
    dims = store.dims
    missing = [m for m in MODALITIES if m not in dims]
    if missing:
        raise ValueError(f"feature store {root} manifest has no dims for {missing} (dims: {dims})")
    index = {c: i for i, c in enumerate(class_names)}
    samples: list[Sample] = []
    for uid in store.ids():
        meta = store.meta(uid)
        label = normalise_label(meta.get("label"))
        if label is None and keep_unlabelled:
            y = -1
        elif label in index:
            y = index[label]
        else:
            continue
        samples.append(
            Sample(
                id=uid,
                group=str(meta.get("group", "")),
                label=y,
                speaker=str(meta.get("speaker", "")),
                loader=partial(_load_from_store, store, uid, dims, mask_invalid),
            )
        )
    return samples, dims, store.manifest


def store_splits(
    root: str | Path,
    class_names: tuple[str, ...],
    test_group: str | None,
    val_fraction: float = 0.1,
    val_by: str = "random",
    seed: int = 0,
    mask_invalid: bool = True,
) -> DataSplits:
    """Leave-one-group-out split: ``test_group`` is the test fold; validation is carved from the rest
    (``val_by`` "random" = stratified utterances, "speaker" or "group" = whole speakers / groups)."""
    samples, dims, manifest = store_samples(root, class_names, mask_invalid)
    if not samples:
        from collections import Counter

        from training.data.feature_store import FeatureStore

        store = FeatureStore(root)
        found = Counter(str(normalise_label(store.meta(u).get("label"))) for u in store.ids())
        listed = ", ".join(f"{k}: {n}" for k, n in sorted(found.items())) or "none: the store is empty"
        raise NoTrainingData(
            f"feature store {root} holds no utterance to train on: {sum(found.values())} dropped because "
            f"their label is not one of {list(class_names)} ({listed})"
        )
    groups = sorted({s.group for s in samples})
    if test_group is None:
        test, rest = [], samples
    else:
        if test_group not in groups:
            raise ValueError(f"test group {test_group!r} not in the store; groups: {groups}")
        test = [s for s in samples if s.group == test_group]
        rest = [s for s in samples if s.group != test_group]
    if val_by == "random":
        train, val = stratified_split(rest, val_fraction, seed)
    elif val_by in ("speaker", "group"):
        train, val = grouped_split(rest, val_fraction, seed, key=val_by)
    else:
        raise ValueError(f"val_by must be 'random', 'speaker' or 'group', got {val_by!r}")
    return DataSplits(
        train=train,
        val=val,
        test=test,
        dims=dims,
        class_names=tuple(class_names),
        description={
            "source": "feature-store",
            "store_manifest": manifest,
            "test_group": test_group,
            "groups": groups,
            "val_rule": val_by,
            "val_fraction": val_fraction,
            "split_seed": seed,
        },
    )


def store_groups(root: str | Path) -> list[str]:
    """The folds of a store: its distinct ``group`` values, sorted."""
    from training.data.feature_store import FeatureStore

    store = FeatureStore(root)
    return sorted({str(store.meta(u).get("group", "")) for u in store.ids()})
