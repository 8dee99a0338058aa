"""The one dataset interface every source feeds: per-utterance feature sequences -> padded batches.

A ``Sample`` holds, per modality, a float32 [L, D] sequence and a bool [L] validity vector (L may be 0
when the modality does not exist for that utterance). ``FeatureDataset`` standardises features with
``Normalizer`` statistics (computed on the training split only) and yields dicts of tensors;
``collate`` pads them into the training batch contract:

    text / audio / video          [B, L_n, D_n] float32, zero-padded
    text_mask / audio_mask / ...  [B, L_n] bool, True = real position
    present                       [B, 3] float, 1 = the modality exists for the sample
    label                         [B] long (-1 = unlabelled)
    id, group                     list[str]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from models.modalities import MODALITIES


class NoTrainingData(ValueError):
    """A data source that yields nothing to train on; the message says which filter dropped what."""


@dataclass
class Sample:
    """One utterance. Features are held in memory (``features``/``valid``) or read on demand by
    ``loader`` (feature stores too large for memory); ``load()`` serves both."""

    id: str
    group: str  # speaker / session / video: the unit of grouped splits
    label: int  # class index, -1 when unlabelled
    features: dict[str, np.ndarray] | None = None  # modality -> float32 [L, D] (L = 0: missing)
    valid: dict[str, np.ndarray] | None = None  # modality -> bool [L]; None = all positions valid
    speaker: str = ""
    loader: Callable[[], tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] | None = None
    corpus: str = ""  # multi-corpus stores: which corpus the sample comes from
    lengths: dict[str, int] | None = None  # frames per modality as stored (known without loading)

    def load(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(features, valid) with every modality present as a key."""
        if self.features is None:
            if self.loader is None:
                raise ValueError(f"sample {self.id} has neither features nor a loader")
            return self.loader()
        valid = self.valid or {}
        return self.features, {m: valid.get(m, np.ones(len(x), bool)) for m, x in self.features.items()}


@dataclass
class Normalizer:
    """Per-modality, per-dimension standardisation x -> (x - mean) / std over valid positions.

    Statistics come from the training split only and are saved in the checkpoint's ``extra`` so that
    evaluation and the engine preprocess exactly as training did.
    """

    mean: dict[str, list[float]]
    std: dict[str, list[float]]

    @classmethod
    def fit(
        cls,
        samples: Sequence[Sample],
        dims: dict[str, int],
        eps: float = 1e-6,
        raw_tail: dict[str, int] | None = None,
    ) -> Normalizer:
        """Streaming float64 sums over every valid position of ``samples`` (memory O(D)). The last
        ``raw_tail[m]`` dims of modality m (log-probabilities) are left as they are (mean 0, std 1)."""
        total = {m: np.zeros(dims[m]) for m in MODALITIES}
        total_sq = {m: np.zeros(dims[m]) for m in MODALITIES}
        count = dict.fromkeys(MODALITIES, 0)
        for s in samples:
            feats, valid = s.load()
            for m in MODALITIES:
                x = feats[m][valid[m]].astype(np.float64)
                total[m] += x.sum(axis=0)
                total_sq[m] += (x * x).sum(axis=0)
                count[m] += len(x)
        mean: dict[str, list[float]] = {}
        std: dict[str, list[float]] = {}
        for m in MODALITIES:
            n = max(count[m], 1)
            mu = total[m] / n
            sd = np.sqrt(np.maximum(total_sq[m] / n - mu * mu, 0.0))
            sd = np.where(sd < eps, 1.0, sd)  # constant dimensions are left centred, not blown up
            k = (raw_tail or {}).get(m, 0)
            if k:
                mu[-k:], sd[-k:] = 0.0, 1.0
            mean[m], std[m] = mu.tolist(), sd.tolist()
        return cls(mean, std)

    @classmethod
    def identity(cls, dims: dict[str, int]) -> Normalizer:
        return cls({m: [0.0] * dims[m] for m in MODALITIES}, {m: [1.0] * dims[m] for m in MODALITIES})

    def apply(self, m: str, x: np.ndarray) -> np.ndarray:
        mu = np.asarray(self.mean[m], np.float32)
        sd = np.asarray(self.std[m], np.float32)
        return (x - mu) / sd

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint layout the engine reads (``models.fusion_meta``): {modality: {"mean", "std"}}."""
        return {m: {"mean": self.mean[m], "std": self.std[m]} for m in MODALITIES}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        missing = [m for m in MODALITIES if not isinstance(d.get(m), dict) or {"mean", "std"} - set(d[m])]
        if missing:
            raise ValueError(
                f"normalisation statistics lack modalities {missing} (layout: {{m: {{mean, std}}}})"
            )
        return cls({m: list(d[m]["mean"]) for m in MODALITIES}, {m: list(d[m]["std"]) for m in MODALITIES})


# (sample, index, epoch, raw features, validity) -> (features, validity); must be deterministic in its inputs.
SampleTransform = Callable[
    [Sample, int, int, dict[str, np.ndarray], dict[str, np.ndarray]],
    tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
]


class FeatureDataset(Dataset):
    """Samples -> dicts of tensors (one item per utterance; see ``collate``).

    Invalid positions (e.g. frames without a face) keep their values but are masked out, so no
    statistic or pooled feature sees them. A modality with L = 0 yields one masked zero row.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        dims: dict[str, int],
        normalizer: Normalizer | None = None,
        max_len: dict[str, int] | None = None,
        transform: SampleTransform | None = None,
    ) -> None:
        self.samples = list(samples)
        self.dims = dict(dims)
        self.normalizer = normalizer or Normalizer.identity(self.dims)
        self.max_len = max_len or {}
        self.transform = transform  # training-time change of a sample's raw features (e.g. face pairing)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The trainer calls this every epoch, so a transform can draw fresh, reproducible choices."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.samples[i]
        feats, valid = s.load()
        if self.transform is not None:
            feats, valid = self.transform(s, i, self.epoch, feats, valid)
        item: dict[str, Any] = {
            "id": s.id,
            "group": s.group,
            "label": torch.tensor(s.label, dtype=torch.long),
        }
        present = []
        for m in MODALITIES:
            x, v = feats[m], valid[m]
            if x.ndim != 2 or x.shape[1] != self.dims[m]:
                raise ValueError(f"{s.id}/{m}: features of shape {x.shape}, expected [L, {self.dims[m]}]")
            cap = self.max_len.get(m)
            if cap is not None and len(x) > cap:  # uniform subsampling keeps the whole utterance's span
                idx = np.linspace(0, len(x) - 1, cap).round().astype(np.int64)
                x, v = x[idx], v[idx]
            if len(x) == 0:
                x, v = np.zeros((1, self.dims[m]), np.float32), np.zeros(1, bool)
            else:
                x = np.where(v[:, None], self.normalizer.apply(m, x), 0.0).astype(np.float32)
            item[m] = torch.from_numpy(np.ascontiguousarray(x))
            item[f"{m}_mask"] = torch.from_numpy(np.ascontiguousarray(v))
            present.append(float(v.any()))
        item["present"] = torch.tensor(present, dtype=torch.float32)
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad a list of dataset items into one batch (see the module docstring for shapes)."""
    batch: dict[str, Any] = {"id": [it["id"] for it in items], "group": [it["group"] for it in items]}
    b = len(items)
    for m in MODALITIES:
        length = max(int(it[m].shape[0]) for it in items)
        dim = int(items[0][m].shape[1])
        x = torch.zeros(b, length, dim, dtype=torch.float32)
        mask = torch.zeros(b, length, dtype=torch.bool)
        for j, it in enumerate(items):
            n = it[m].shape[0]
            x[j, :n] = it[m]
            mask[j, :n] = it[f"{m}_mask"]
        batch[m], batch[f"{m}_mask"] = x, mask
    batch["present"] = torch.stack([it["present"] for it in items])
    batch["label"] = torch.stack([it["label"] for it in items])
    return batch


def batch_to(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """Move every tensor of a batch to ``device`` (lists of strings stay)."""
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
    }


@dataclass
class DataSplits:
    """Train / validation / test samples of one experiment (one fold), with what describes them."""

    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    dims: dict[str, int]
    class_names: tuple[str, ...]
    description: dict[str, Any] = field(default_factory=dict)  # source, split rule, extractor profile ...
    # Per-sample drawing weights for the training sampler (None: a plain shuffle of ``train``).
    train_weights: list[float] | None = None

    def summary(self) -> dict[str, Any]:
        def counts(ss: list[Sample]) -> list[int]:
            c = np.bincount([s.label for s in ss if s.label >= 0], minlength=len(self.class_names))
            return c.tolist()

        return {
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
            "train_class_counts": counts(self.train),
            "val_class_counts": counts(self.val),
            "test_class_counts": counts(self.test),
            "groups_test": sorted({s.group for s in self.test}),
        }
