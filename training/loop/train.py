"""Train a fusion model with per-sample missing-modality conditions.

    python -m training.train --config configs/train/cmarr_mosi.yaml --root data/mosi-trimodal --out runs/mosi
    python -m training.train --config configs/train/cmarr_iemocap.yaml --root <feature store> \
        --out runs/iemocap_s1 --set data.test_group=Session1 [--set ablation=wo_udcl] [--resume]
    torchrun --nproc_per_node=4 -m training.train ...        # DDP (NCCL on GPU, gloo on CPU)

Writes to ``--out``: ``best.safetensors``, once, when training is finished: the selected epoch's weights
with the model config, normalisation statistics, extractor profile, class names, a training summary and
what ``training.fit.finalize`` fits after training (temperature, expert heads, fusion rules). While it
runs, the resumable state: ``selected.safetensors`` (the selected epoch as trained, not yet finished; an
engine never loads it) and ``last_state.pt`` (everything needed to resume: weights, optimizer, scheduler,
scaler, counters; loaded with ``weights_only=True``). Also ``metrics.csv`` (one row per epoch),
``config.yaml`` and ``summary.json``.

Determinism: every random draw of an epoch (shuffling, missing conditions, dropout) is seeded from
(seed, epoch, rank), so an interrupted run resumed from ``last_state.pt`` continues exactly as the
uninterrupted run would have (on the same device and software).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from models.config_io import apply_overrides, from_dict, load_recipe
from models.modalities import MODALITIES
from training.config import TrainConfig
from training.data.dataset import DataSplits, Normalizer, NoTrainingData
from training.data.sources import load_splits
from training.loop.distributed import DistInfo, init_distributed
from training.loop.model_setup import (
    build_model,
    extractor_profile_of,
    logprob_tail,
    validate,
)
from training.loop.parts import (
    build_training_model,
    condition_sampler,
    data_loaders,
    optimisation,
    test_reports,
    train_epoch,
)
from training.loop.records import (
    BEST_FILE,
    SELECTED_FILE,
    Progress,
    Run,
    RunOutputs,
    TrainResult,
    epoch_row,
)

__all__ = ["DistInfo", "build_model", "extractor_profile_of", "load_train_config", "train"]


# --------------------------------------------------------------------------------------------------
# Schedules and seeding
# --------------------------------------------------------------------------------------------------
def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------
def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    splits: DataSplits | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    evaluate_test: bool = True,
) -> TrainResult:
    """Train, select the best epoch on validation, save it, and (optionally) evaluate it on test."""
    run = _setup(cfg, Path(out_dir), splits, device)
    progress = Progress.resumed(run) if resume else Progress()
    outputs = RunOutputs(run, resumed=resume and progress.start_epoch > 0)
    try:
        _run_epochs(run, progress, outputs)
        result = progress.result(run)
        _finish(run, result, evaluate_test)
    finally:
        outputs.close()
    return result


def _setup(
    cfg: TrainConfig, out: Path, splits: DataSplits | None, device: str | torch.device | None
) -> Run:
    dinfo = init_distributed()
    if dinfo.is_main:
        out.mkdir(parents=True, exist_ok=True)
    if device is None:
        device = f"cuda:{dinfo.local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    seed_everything(cfg.seed, cfg.deterministic)
    splits = splits if splits is not None else load_splits(cfg.data)
    if not splits.train or not splits.val:
        raise ValueError(f"need non-empty train and validation splits, got {splits.summary()}")
    tail = logprob_tail(splits)
    normalizer = Normalizer.fit(splits.train, splits.dims, raw_tail=dict(zip(MODALITIES, tail, strict=True)))
    max_len = dict(cfg.data.max_len)
    data = data_loaders(cfg, splits, normalizer, max_len, dinfo)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    adapter, core, model, experts = build_training_model(cfg, splits, normalizer, device, dinfo)
    cond_sampler = condition_sampler(cfg)
    opt = optimisation(cfg, model, device, steps_per_epoch=max(1, len(data.train_loader)))
    return Run(
        cfg, out, dinfo, device, splits, normalizer, max_len, data, adapter, core, model, experts,
        cond_sampler, opt,
    )


def _run_epochs(run: Run, progress: Progress, outputs: RunOutputs) -> None:
    cfg, metric = run.cfg, run.cfg.selection_metric
    # A run that had already stopped early stays stopped when resumed (e.g. to finalize it again).
    patience = cfg.early_stopping_patience
    start = progress.start_epoch
    progress.stopped_early = bool(start and patience and progress.bad_epochs >= patience)
    progress.epoch = start - 1
    for epoch in range(start, cfg.optim.epochs if not progress.stopped_early else start):
        t0 = time.perf_counter()
        losses = train_epoch(
            cfg, epoch, run.model, run.data, run.cond_sampler, run.opt, run.device, run.dinfo
        )
        # Every rank evaluates the same validation set, so all take the same early-stopping decision.
        report = validate(
            run.core, run.adapter, run.data.val_loader, run.splits, run.normalizer, run.device, run.max_len
        )
        value = report.selection_value(metric)
        improved = progress.record(epoch, value)
        row = epoch_row(
            epoch + 1, run.opt.scheduler.get_last_lr()[0], losses, report, time.perf_counter() - t0, value
        )
        progress.history.append(row)
        selected = {
            "best_epoch": epoch + 1,
            "selection_metric": metric,
            "selection_value": value,
            "val": report.to_dict(),
            "train_losses": losses,
        } if improved else None
        outputs.epoch(row, progress, selected)
        if patience and progress.bad_epochs >= patience:
            progress.stopped_early = True
            break
    if run.dinfo.enabled:
        dist.barrier()


def _finish(run: Run, result: TrainResult, evaluate_test: bool) -> None:
    """Finalize the selected epoch into the finished checkpoint (written once), test it, summarise."""
    cfg, out = run.cfg, run.out
    best = out / BEST_FILE
    # a run trained before the selected epoch was kept apart has only its best file: finalized again in place
    selected = out / SELECTED_FILE if (out / SELECTED_FILE).is_file() else best
    if run.dinfo.is_main and selected.is_file():
        from training.fit.finalize import finalize_checkpoint

        result.calibration = finalize_checkpoint(
            selected,
            run.splits,
            run.normalizer,
            run.device,
            run.max_len,
            run.experts if cfg.experts else None,
            cfg.attention_min_gain,
            cfg.refit_expert_weights,
            cfg.product_prior,
            dest=best,
        )
    if run.dinfo.enabled:
        dist.barrier()
    if evaluate_test and best.is_file():
        reports = test_reports(cfg, best, run.adapter, run.splits, run.normalizer, run.data, run.device)
        result.val_report, result.test_report = reports
    if run.dinfo.is_main:
        summary = {
            k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items() if k != "history"
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=1))


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------
def load_train_config(
    path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), root: str | None = None
) -> TrainConfig:
    data = load_recipe(path) if path else {}  # a recipe may extend another (models.config_io.load_recipe)
    if root is not None:
        data = apply_overrides(data, [f"data.root={root}"])
    data = apply_overrides(data, list(overrides))
    return from_dict(TrainConfig, data, where=str(path) if path else "TrainConfig")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--root", default=None, help="data folder (overrides data.root)")
    ap.add_argument("--out", required=True)
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. --set optim.lr=1e-4 --set ablation=wo_udcl",
    )
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last_state.pt")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    try:
        cfg = load_train_config(args.config, args.overrides, args.root)
    except (ValueError, FileNotFoundError) as e:  # a bad recipe or override: before any work
        print(f"python -m training.train: error: {e}", file=sys.stderr)
        return 2
    try:
        result = train(cfg, args.out, resume=args.resume, device=args.device)
    except NoTrainingData as e:
        print(f"python -m training.train: error: {e}", file=sys.stderr)
        return 2
    if init_distributed().is_main:
        print(
            json.dumps(
                {
                    "best_checkpoint": str(result.best_checkpoint),
                    "best_epoch": result.best_epoch,
                    result.selection_metric: result.best_value,
                    "epochs_run": result.epochs_run,
                    "test": {
                        c: {"war": m["war"], "uar": m["uar"]}
                        for c, m in (
                            (result.test_report or {}).get("conditions")
                            or (result.test_report or {}).get("entries", {})
                        ).items()
                    },
                },
                indent=1,
            )
        )
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0
