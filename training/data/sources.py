"""The train / validation / test splits of the configured data source (``data.source``): CMU-MOSI
features, the multi-corpus recipe, or a feature store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from training.data.dataset import DataSplits

if TYPE_CHECKING:
    from training.config import DataConfig


def load_splits(data: DataConfig) -> DataSplits:
    """Train / val / test splits for the configured source."""
    if not data.root:
        raise ValueError("data.root is empty: pass --root <data folder> (MOSI folder or feature store)")
    if data.source == "mosi":
        from training.data.mosi import load_mosi

        return load_mosi(data.root, val_fraction=data.val_fraction, seed=data.split_seed)
    if data.source == "multi":
        from training.data.multicorpus import multicorpus_splits

        return multicorpus_splits(data)
    from training.data.store_dataset import store_splits

    return store_splits(
        data.root,
        tuple(data.classes),
        data.test_group,
        val_fraction=data.val_fraction,
        val_by=data.val_by,
        seed=data.split_seed,
        mask_invalid=data.mask_invalid_frames,
    )
