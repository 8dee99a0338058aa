"""CM-ARR and CIDer, each with and without RMFM training, trained the same way on the same data.

The four variants of the robustness comparison (``benchmarks.cider_sequences``):

* ``cmarr``        CM-ARR with its own recipe: one of the availability conditions within what the sample
                   has, drawn per sample (whole modalities hidden and reconstructed)
* ``cmarr+rmfm``   CM-ARR on RMFM-masked copies with MSSD (``training.loop.mssd.CMARRMSSDAdapter``)
* ``cider``        CIDer on complete inputs, cross-entropy only
* ``cider+rmfm``   CIDer on RMFM-masked copies with MSSD (``training.loop.mssd.CIDerAdapter``)

Every variant gets the same items (normalised feature sequences held in memory), batch size, optimiser,
schedule, epoch budget and seed; the epoch is selected by validation UAR. The time per epoch counts the
training steps only (no validation), median over epochs, so the two models' costs compare in one run.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.cider import MSSDConfig
from models.config_io import from_dict
from training.data.conditions import ConditionSampler, MissingConfig
from training.data.dataset import FeatureDataset, Normalizer, Sample, collate
from training.evaluation.robustness import accuracy_uar
from training.loop.adapters import CMARRAdapter, ModelAdapter
from training.loop.mssd import CIDerAdapter, CMARRMSSDAdapter
from training.loop.step import optimizer_step

VARIANTS: tuple[str, ...] = ("cmarr", "cmarr+rmfm", "cider", "cider+rmfm")
Item = dict[str, Any]


def load_items(samples: Sequence[Sample], dims: dict[str, int], norm: Normalizer) -> list[Item]:
    """Every sample read once and normalised (the trainer's FeatureDataset items), kept in memory."""
    ds = FeatureDataset(list(samples), dims, norm)
    return [ds[i] for i in range(len(ds))]


def length_order(items: Sequence[Item]) -> list[int]:
    """Item indices sorted by length (audio, then text, then video): batches with little padding."""
    return sorted(
        range(len(items)), key=lambda i: tuple(len(items[i][m]) for m in ("audio", "text", "video"))
    )


def batches_of(
    items: Sequence[Item], batch_size: int = 64, order: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """Evaluation batches in a fixed order (``length_order`` unless given)."""
    order = length_order(items) if order is None else order
    out = []
    for s in range(0, len(order), batch_size):
        b = collate([items[i] for i in order[s : s + batch_size]])
        b["avail"] = b["present"].to(torch.float32)
        out.append(b)
    return out


def bucketed_batches(items: Sequence[Item], batch_size: int, pool: int = 16) -> list[list[int]]:
    """Shuffled training batches of similar lengths: a random permutation cut into pools of ``pool``
    batches, each pool sorted by length and cut into batches, the batches shuffled (torch's global RNG).
    Padding is computed for nothing; every variant gets the same batches under the same seed."""
    perm = torch.randperm(len(items)).tolist()
    key = [sum(len(items[i][m]) for m in ("audio", "text", "video")) for i in range(len(items))]
    out: list[list[int]] = []
    step = batch_size * pool
    for s in range(0, len(perm), step):
        chunk = sorted(perm[s : s + step], key=lambda i: key[i])
        out += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    return [out[i] for i in torch.randperm(len(out)).tolist()]


def build_variant(
    variant: str,
    dims: dict[str, int],
    classes: tuple[str, ...],
    cmarr_section: dict[str, Any],
    cider_section: dict[str, Any],
) -> tuple[ModelAdapter, torch.nn.Module]:
    """(adapter, fresh model) of a variant; the sections are the ``model`` part of a train config."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {list(VARIANTS)}")
    rmfm = variant.endswith("+rmfm")
    if variant.startswith("cmarr"):
        section = {k: v for k, v in cmarr_section.items() if k != "mssd"}
        mssd = from_dict(MSSDConfig, cider_section.get("mssd", {}), where="mssd")
        adapter: ModelAdapter = CMARRMSSDAdapter(mssd) if rmfm else CMARRAdapter()
    else:
        section = {**cider_section, "mssd": {**cider_section.get("mssd", {}), "enabled": rmfm}}
        adapter = CIDerAdapter()
    cfg = adapter.make_config(section, dims, classes)
    return adapter, adapter.build(cfg)


@dataclass
class TrainStats:
    val_uar: float
    best_epoch: int
    epochs: int
    sec_per_epoch: float  # median over epochs, training steps only
    sec_per_epoch_all: list[float] = field(default_factory=list)
    val_uar_by_epoch: list[float] = field(default_factory=list)


@torch.no_grad()
def predict_logits(adapter: ModelAdapter, model: torch.nn.Module, batches: Sequence[dict[str, Any]]) -> tuple:
    """(logits [N, C], labels [N]) over evaluation batches, in eval mode."""
    model.eval()
    zs, ys = [], []
    for b in batches:
        zs.append(adapter.logits(adapter.forward(model, b)).float())
        ys.append(b["label"])
    return torch.cat(zs), torch.cat(ys)


def uar_of(
    adapter: ModelAdapter, model: torch.nn.Module, batches: Sequence[dict[str, Any]], classes: int
) -> float:
    z, y = predict_logits(adapter, model, batches)
    return accuracy_uar(z.argmax(-1).numpy(), y.numpy(), classes)[1]


def train_step(
    adapter: ModelAdapter, model: torch.nn.Module, batch: dict[str, Any], opt: Any, sched: Any
) -> None:
    """One optimiser step on ``batch`` (its "avail" already drawn): the variant's loss, gradients clipped
    at norm 1, then the scheduler."""
    losses = adapter.loss(model, adapter.forward(model, batch), batch)
    optimizer_step(losses["total"], model, opt, sched, grad_clip=1.0)


def train_variant(
    variant: str,
    adapter: ModelAdapter,
    model: torch.nn.Module,
    train_items: Sequence[Item],
    val_batches: Sequence[dict[str, Any]],
    num_classes: int,
    epochs: int,
    seed: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    log: Callable[[str], None] | None = None,
) -> TrainStats:
    """Train in place with AdamW and a per-step cosine schedule; the weights of the epoch with the best
    validation UAR are kept. Shuffling, missing conditions, masks and dropout are seeded per epoch."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(train_items)
    steps = max(1, epochs * int(np.ceil(n / batch_size)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(s / steps, 1.0))))
    sampler = ConditionSampler(MissingConfig(mode="uniform"), seed=seed) if variant == "cmarr" else None
    best, best_uar, best_epoch = None, -1.0, -1
    times: list[float] = []
    curve: list[float] = []
    for epoch in range(epochs):
        torch.manual_seed(seed * 1000 + epoch)
        if sampler is not None:
            sampler.generator.manual_seed(seed * 7919 + epoch)
        model.train()
        t0 = time.perf_counter()
        for idx in bucketed_batches(train_items, batch_size):
            b = collate([train_items[j] for j in idx])
            b["avail"] = (
                sampler.sample(b["present"]) if sampler is not None else b["present"].to(torch.float32)
            )
            train_step(adapter, model, b, opt, sched)
        times.append(time.perf_counter() - t0)
        uar = uar_of(adapter, model, val_batches, num_classes)
        curve.append(uar)
        if uar > best_uar:
            best, best_uar, best_epoch = copy.deepcopy(model.state_dict()), uar, epoch
        if log is not None:
            log(f"  {variant} epoch {epoch + 1}/{epochs}: {times[-1]:.1f} s, val UAR {uar:.3f}")
    assert best is not None
    model.load_state_dict(best)
    model.eval()
    return TrainStats(best_uar, best_epoch + 1, epochs, statistics.median(times), times, curve)
