"""Validation splits carved from training data: grouped (no group on both sides) or stratified."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.data.dataset import Sample


def grouped_split(
    samples: Sequence[Sample], val_fraction: float, seed: int, key: str = "group"
) -> tuple[list[Sample], list[Sample]]:
    """Move whole groups (``Sample.group`` or ``Sample.speaker``) to validation until it holds about
    ``val_fraction`` of the samples. Groups are shuffled with ``seed``; at least one group stays on
    each side when there are two or more."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    groups = sorted({getattr(s, key) for s in samples})
    if len(groups) < 2:
        raise ValueError(f"a grouped split needs >= 2 groups by {key!r}, got {groups}")
    order = np.random.default_rng(seed).permutation(len(groups))
    sizes = {g: 0 for g in groups}
    for s in samples:
        sizes[getattr(s, key)] += 1
    target = val_fraction * len(samples)
    val_groups: set[str] = set()
    count = 0
    for i in order:
        g = groups[int(i)]
        if count >= target or len(val_groups) == len(groups) - 1:
            break
        val_groups.add(g)
        count += sizes[g]
    train = [s for s in samples if getattr(s, key) not in val_groups]
    val = [s for s in samples if getattr(s, key) in val_groups]
    return train, val


def stratified_split(
    samples: Sequence[Sample], val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Per-class random split of utterances (not speaker independent: use grouped_split for that)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    labels = np.array([s.label for s in samples])
    val_idx: set[int] = set()
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        val_idx.update(int(i) for i in idx[: int(round(val_fraction * len(idx)))])
    train = [s for i, s in enumerate(samples) if i not in val_idx]
    val = [s for i, s in enumerate(samples) if i in val_idx]
    return train, val
