"""The pieces of a training run that ``training.loop.train.train`` puts together, in its order: the data
loaders, the model (with its expert heads and DDP), the condition sampler, the optimisation (optimiser
with its gate group, schedule, AMP scaler), one epoch, and the test reports of the finished model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from training.config import TrainConfig
from training.data.conditions import ConditionSampler
from training.data.dataset import DataSplits, FeatureDataset, Normalizer, batch_to, collate
from training.data.samplers import CorpusBatchDraw, EpochShuffle, WeightedEpochDraw
from training.evaluation.conditions import evaluate_conditions
from training.loop.adapters import ModelAdapter
from training.loop.distributed import DistInfo
from training.loop.model_setup import build_model
from training.loop.step import optimizer_step


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (linear warm-up, then the schedule)."""
    o = cfg.optim
    total = o.epochs * steps_per_epoch
    warm = int(round(o.warmup_epochs * steps_per_epoch))
    if step < warm:
        return (step + 1) / warm
    if o.scheduler == "constant":
        return 1.0
    if o.scheduler == "step":
        return o.gamma ** ((step // steps_per_epoch) // o.step_epochs)
    progress = (step - warm) / max(1, total - warm)
    return o.min_lr_ratio + (1.0 - o.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class LossModule(torch.nn.Module):
    """model + adapter as one module whose forward returns the loss dict (what DDP wraps)."""

    def __init__(self, model: torch.nn.Module, adapter: ModelAdapter) -> None:
        super().__init__()
        self.model = model
        self.adapter = adapter

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        output = self.adapter.forward(self.model, batch)
        return self.adapter.loss(self.model, output, batch)


@dataclass
class Data:
    train_ds: FeatureDataset
    sampler: Any  # set_epoch(epoch) before each epoch
    train_loader: DataLoader
    val_loader: DataLoader


def _sampler(cfg: TrainConfig, splits: DataSplits, train_ds: FeatureDataset, dinfo: DistInfo) -> Any:
    if dinfo.enabled:
        from torch.utils.data.distributed import DistributedSampler

        return DistributedSampler(
            train_ds,
            num_replicas=dinfo.world_size,
            rank=dinfo.rank,
            shuffle=True,
            seed=cfg.seed,
            drop_last=False,
        )
    size = cfg.data.epoch_size or len(train_ds)
    if splits.train_weights is not None and cfg.data.corpus_batches:
        corpora = [s.corpus for s in splits.train]
        return CorpusBatchDraw(splits.train_weights, corpora, cfg.optim.batch_size, size, cfg.seed)
    if splits.train_weights is not None:
        return WeightedEpochDraw(splits.train_weights, size, cfg.seed)
    return EpochShuffle(len(train_ds), cfg.seed)


def data_loaders(
    cfg: TrainConfig, splits: DataSplits, normalizer: Normalizer, max_len: dict[str, int], dinfo: DistInfo
) -> Data:
    """The training set (with the multi-corpus recipe's crops and face pairing), its sampler, and the
    training and validation loaders."""
    transform = None
    if cfg.data.source == "multi":
        from training.data.multicorpus import Compose, FacePairing, TemporalCrop, face_samples

        rate = (splits.description.get("store_manifest") or {}).get("frame_rates", {}).get("audio") or 50.0
        transform = Compose(
            TemporalCrop("audio", int(cfg.data.crop_min_seconds * rate), cfg.data.crop_audio, cfg.seed)
            if cfg.data.crop_audio > 0
            else None,
            FacePairing(face_samples(splits.train), cfg.data.pair_faces, cfg.seed)
            if cfg.data.pair_faces > 0
            else None,
        )
    train_ds = FeatureDataset(splits.train, splits.dims, normalizer, max_len, transform=transform)
    val_loader = DataLoader(
        FeatureDataset(splits.val, splits.dims, normalizer, max_len),
        batch_size=max(64, cfg.optim.batch_size),
        shuffle=False,
        collate_fn=collate,
        num_workers=cfg.data.num_workers,
    )
    sampler = _sampler(cfg, splits, train_ds, dinfo)
    workers = cfg.data.num_workers
    if isinstance(sampler, CorpusBatchDraw):
        train_loader = DataLoader(train_ds, batch_sampler=sampler, collate_fn=collate, num_workers=workers)
    else:
        train_loader = DataLoader(
            train_ds,
            batch_size=cfg.optim.batch_size,
            sampler=sampler,
            collate_fn=collate,
            num_workers=workers,
            drop_last=len(train_ds) > cfg.optim.batch_size,
        )
    return Data(train_ds, sampler, train_loader, val_loader)


def build_training_model(
    cfg: TrainConfig, splits: DataSplits, normalizer: Normalizer, device: torch.device, dinfo: DistInfo
) -> tuple[ModelAdapter, torch.nn.Module, torch.nn.Module, Any]:
    """(adapter, the model, the module trained (model + loss, DDP-wrapped when distributed), the fitted
    expert heads or None). The caller seeds torch first, so every rank starts from the same weights."""
    adapter, core, _ = build_model(cfg, splits)
    experts = None
    if cfg.data.source == "multi" and (cfg.experts or cfg.skip_init == "experts"):
        from training.fit.experts import fit_experts, init_skip_from_experts

        experts = fit_experts(splits.train, splits.val, splits.dims, splits.class_names)
        if cfg.skip_init == "experts":
            init_skip_from_experts(core, experts, normalizer)
    core.to(device)
    # The loss runs inside the (DDP-wrapped) forward: CM-ARR's L_udcl uses parameters of its own, and DDP
    # only tracks parameter use within forward.
    model: torch.nn.Module = LossModule(core, adapter)
    if dinfo.enabled:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=cfg.ddp_find_unused_parameters,
        )
    return adapter, core, model, experts


def condition_sampler(cfg: TrainConfig) -> ConditionSampler:
    """The per-sample availability draws of the configured missing mode."""
    missing_cfg = cfg.missing
    if cfg.effective_missing_mode != missing_cfg.mode:
        from training.data.conditions import MissingConfig

        missing_cfg = MissingConfig(
            mode=cfg.effective_missing_mode, conditions=missing_cfg.conditions, weights=missing_cfg.weights
        )
    return ConditionSampler(missing_cfg, seed=cfg.seed)


@dataclass
class Optimisation:
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    use_amp: bool
    amp_dtype: torch.dtype

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


def optimisation(
    cfg: TrainConfig, model: torch.nn.Module, device: torch.device, steps_per_epoch: int
) -> Optimisation:
    """The optimiser (gates, a few scalars that weigh whole paths, learn at ``gate_lr_mult`` times the base
    rate without decay), the per-step schedule and the AMP scaler."""
    opt_cls = torch.optim.AdamW if cfg.optim.optimizer == "adamw" else torch.optim.Adam
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    gates = [p for n, p in named if n.endswith("_gate")]
    groups: list[dict[str, Any]] = [{"params": [p for n, p in named if not n.endswith("_gate")]}]
    if gates:
        groups.append({"params": gates, "lr": cfg.optim.lr * cfg.optim.gate_lr_mult, "weight_decay": 0.0})
    # The fused kernel does one pass over all parameters: far less per-step overhead than foreach/loops.
    optimizer = opt_cls(
        groups, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, fused=device.type in ("cuda", "cpu")
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps_per_epoch, cfg))
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    return Optimisation(optimizer, scheduler, scaler, use_amp, amp_dtype)


def _progress(loader: DataLoader, enabled: bool, desc: str) -> Any:
    if not enabled:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)


def train_epoch(
    cfg: TrainConfig,
    epoch: int,
    model: torch.nn.Module,
    data: Data,
    cond_sampler: ConditionSampler,
    opt: Optimisation,
    device: torch.device,
    dinfo: DistInfo,
) -> dict[str, float]:
    """One pass over the training set; the mean of each loss term. Every draw of the epoch (shuffling,
    missing conditions, dropout) is seeded from (seed, epoch, rank), so a resumed run continues exactly."""
    data.sampler.set_epoch(epoch)
    data.train_ds.set_epoch(epoch)
    cond_sampler.generator.manual_seed(cfg.seed * 7919 + epoch * 101 + dinfo.rank)
    torch.manual_seed(cfg.seed * 1_000_003 + epoch * 31 + dinfo.rank)  # dropout draws
    model.train()
    sums: dict[str, float] = {}
    n_batches = 0
    for batch in _progress(data.train_loader, cfg.progress and dinfo.is_main, f"epoch {epoch + 1}"):
        batch = batch_to(batch, device)
        batch["avail"] = cond_sampler.sample(batch["present"])
        with torch.autocast(device_type=device.type, dtype=opt.amp_dtype, enabled=opt.use_amp):
            losses = model(batch)
        loss = losses["total"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss at epoch {epoch + 1}: { {k: float(v) for k, v in losses.items()} }"
            )
        optimizer_step(loss, model, opt.optimizer, opt.scheduler, opt.scaler, cfg.optim.grad_clip)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        n_batches += 1
    return {k: v / max(1, n_batches) for k, v in sums.items()}


def test_reports(
    cfg: TrainConfig,
    best: Path,
    adapter: ModelAdapter,
    splits: DataSplits,
    normalizer: Normalizer,
    data: Data,
    device: torch.device,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(validation report, test report or None) of the finished checkpoint ``best``: per corpus and
    condition for the multi-corpus recipe, per condition otherwise."""
    max_len = dict(cfg.data.max_len)
    if cfg.data.source == "multi":
        from training.evaluation.checkpoint_report import natural_test_report

        val = natural_test_report(best, splits, splits.val, device, max_len)
        test = natural_test_report(best, splits, splits.test, device, max_len) if splits.test else None
        return val, test
    from models.checkpoint import load_checkpoint

    model = load_checkpoint(best).model.to(device)
    val = evaluate_conditions(model, adapter, data.val_loader, splits.class_names, device).to_dict()
    if not splits.test:
        return val, None
    test_loader = DataLoader(
        FeatureDataset(splits.test, splits.dims, normalizer, max_len),
        batch_size=max(64, cfg.optim.batch_size),
        shuffle=False,
        collate_fn=collate,
    )
    return val, evaluate_conditions(model, adapter, test_loader, splits.class_names, device).to_dict()
