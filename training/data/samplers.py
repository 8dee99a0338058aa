"""Training samplers. Every draw comes from (seed, epoch), so an interrupted run resumed from its saved
state continues exactly as the uninterrupted run would have, without saving generator state."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochShuffle(Sampler[int]):
    """A permutation per epoch drawn from (seed, epoch): resumable without saving generator state."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class CorpusBatchDraw(Sampler[list[int]]):
    """Batches drawn one corpus at a time: a corpus by its total weight, then ``batch`` samples of it by
    their weights (with replacement), ``size // batch`` batches per epoch, from (seed, epoch).

    Samples of one corpus have the same modalities and similar lengths, so a batch is not padded to the
    longest utterance of another corpus (a text-only MELD sample would otherwise carry 4 s of empty
    speech frames through every layer): on 2 CPU cores this makes an epoch several times cheaper."""

    def __init__(self, weights: list[float], groups: list[str], batch: int, size: int, seed: int) -> None:
        self.batch, self.size, self.seed, self.epoch = batch, size, seed, 0
        names = sorted(set(groups))
        w = torch.tensor(weights, dtype=torch.float64)
        self.members = [torch.tensor([i for i, g in enumerate(groups) if g == n]) for n in names]
        self.within = [w[m] / w[m].sum() for m in self.members]
        self.corpus_p = torch.stack([w[m].sum() for m in self.members])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        picks = torch.multinomial(self.corpus_p, len(self), replacement=True, generator=g).tolist()
        for c in picks:
            idx = torch.multinomial(self.within[c], self.batch, replacement=True, generator=g)
            yield self.members[c][idx].tolist()

    def __len__(self) -> int:
        return max(1, self.size // self.batch)


class WeightedEpochDraw(Sampler[int]):
    """``size`` indices drawn with replacement by per-sample weights, from (seed, epoch): resumable."""

    def __init__(self, weights: list[float], size: int, seed: int) -> None:
        self.weights = torch.tensor(weights, dtype=torch.float64)
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.multinomial(self.weights, self.size, replacement=True, generator=g).tolist())

    def __len__(self) -> int:
        return self.size
