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
import csv
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml

from models.checkpoint import save_checkpoint
from models.config_io import apply_overrides, from_dict, load_recipe, to_dict
from models.modalities import MODALITIES
from training.config import TrainConfig
from training.data.dataset import DataSplits, Normalizer, NoTrainingData
from training.data.sources import load_splits
from training.evaluation.conditions import ConditionReport
from training.loop.distributed import DistInfo, init_distributed
from training.loop.model_setup import (
    build_model,
    checkpoint_extra,
    extractor_profile_of,
    logprob_tail,
    validate,
)
from training.loop.parts import (
    Optimisation,
    build_training_model,
    condition_sampler,
    data_loaders,
    optimisation,
    test_reports,
    train_epoch,
)

__all__ = ["DistInfo", "build_model", "extractor_profile_of", "load_train_config", "train"]

STATE_FILE = "last_state.pt"
BEST_FILE = "best.safetensors"  # the finished checkpoint, written once
SELECTED_FILE = "selected.safetensors"  # the selected epoch as trained: resumable state


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
@dataclass
class TrainResult:
    out_dir: Path
    best_checkpoint: Path
    best_epoch: int
    best_value: float
    selection_metric: str
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    test_report: dict[str, Any] | None = None
    val_report: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None


class _CsvLog:
    def __init__(self, path: Path, resume: bool) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if resume and path.is_file():
            with open(path, newline="") as f:
                self.fields = next(csv.reader(f), None)
        elif path.exists():
            path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.fields])


def _epoch_row(
    epoch: int, lr: float, losses: dict[str, float], report: ConditionReport, secs: float, selected: float
) -> dict[str, Any]:
    row: dict[str, Any] = {"epoch": epoch, "lr": f"{lr:.3e}", "seconds": round(secs, 2)}
    row.update({f"train_{k}": round(v, 5) for k, v in losses.items()})
    for c, m in report.per_condition.items():
        row[f"val_war_{c}"] = round(m.war, 4)
        row[f"val_uar_{c}"] = round(m.uar, 4)
    mm = report.mean_missing()
    row["val_uar_mean_missing"] = round(mm.get("uar", float("nan")), 4)
    row["val_uar_mean_all"] = round(report.mean_all()["uar"], 4)
    row["selected"] = round(selected, 5)
    return row


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    splits: DataSplits | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    evaluate_test: bool = True,
) -> TrainResult:
    """Train, select the best epoch on validation, save it, and (optionally) evaluate it on test."""
    dinfo = init_distributed()
    out = Path(out_dir)
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
    metric = cfg.selection_metric

    start_epoch, best_value, best_epoch, bad_epochs = 0, -math.inf, -1, 0
    history: list[dict[str, Any]] = []
    state_path = out / STATE_FILE
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=True)
        core.load_state_dict(state["model"])
        opt.load_state_dict(state)
        start_epoch, best_value = int(state["epoch"]) + 1, float(state["best_value"])
        best_epoch, bad_epochs = int(state["best_epoch"]), int(state["bad_epochs"])
        history = json.loads((out / "history.json").read_text()) if (out / "history.json").is_file() else []
    log = _CsvLog(out / "metrics.csv", resume=resume and start_epoch > 0) if dinfo.is_main else None
    tb = _tensorboard(out, cfg.log) if dinfo.is_main else None
    extra_base = checkpoint_extra(cfg, splits, normalizer)
    if dinfo.is_main:
        (out / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

    # A run that had already stopped early stays stopped when resumed (e.g. to finalize it again).
    patience = cfg.early_stopping_patience
    stopped_early = bool(start_epoch and patience and bad_epochs >= patience)
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.optim.epochs if not stopped_early else start_epoch):
        t0 = time.perf_counter()
        mean_losses = train_epoch(cfg, epoch, model, data, cond_sampler, opt, device, dinfo)
        # Every rank evaluates the same validation set, so all take the same early-stopping decision.
        report = validate(core, adapter, data.val_loader, splits, normalizer, device, max_len)
        value = report.selection_value(metric)
        improved = value > best_value
        if improved:
            best_value, best_epoch, bad_epochs = value, epoch, 0
        else:
            bad_epochs += 1
        row = _epoch_row(
            epoch + 1, opt.scheduler.get_last_lr()[0], mean_losses, report, time.perf_counter() - t0, value
        )
        history.append(row)
        if dinfo.is_main:
            assert log is not None
            log.write(row)
            if tb is not None:
                for k, v in row.items():
                    if isinstance(v, int | float) and k != "epoch":
                        tb.add_scalar(k, v, epoch + 1)
            if improved:
                summary = {
                    "best_epoch": epoch + 1,
                    "selection_metric": metric,
                    "selection_value": value,
                    "val": report.to_dict(),
                    "train_losses": mean_losses,
                }
                save_checkpoint(out / SELECTED_FILE, core, {**extra_base, "training_summary": summary})
            _save_state(state_path, core, opt, epoch, best_value, best_epoch, bad_epochs)
            (out / "history.json").write_text(json.dumps(history))
        if cfg.early_stopping_patience and bad_epochs >= cfg.early_stopping_patience:
            stopped_early = True
            break
    if dinfo.enabled:
        dist.barrier()

    result = TrainResult(
        out_dir=out,
        best_checkpoint=out / BEST_FILE,
        best_epoch=best_epoch + 1,
        best_value=best_value,
        selection_metric=metric,
        epochs_run=epoch + 1,
        stopped_early=stopped_early,
        history=history,
    )
    best = out / BEST_FILE
    # a run trained before the selected epoch was kept apart has only its best file: finalized again in place
    selected = out / SELECTED_FILE if (out / SELECTED_FILE).is_file() else best
    if dinfo.is_main and selected.is_file():
        from training.fit.finalize import finalize_checkpoint

        result.calibration = finalize_checkpoint(
            selected,
            splits,
            normalizer,
            device,
            max_len,
            experts if cfg.experts else None,
            cfg.attention_min_gain,
            cfg.refit_expert_weights,
            cfg.product_prior,
            dest=best,
        )
    if dinfo.enabled:
        dist.barrier()
    if evaluate_test and best.is_file():
        reports = test_reports(cfg, best, adapter, splits, normalizer, data, device)
        result.val_report, result.test_report = reports
    if dinfo.is_main:
        summary = {
            k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items() if k != "history"
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if tb is not None:
        tb.close()
    return result


def _tensorboard(out: Path, log: str) -> Any:
    if log == "csv":
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # tensorboard is an optional package
        raise ImportError(
            "log: tensorboard needs the 'tensorboard' package (pip install tensorboard), or use log: csv"
        ) from e
    return SummaryWriter(str(out / "tb"))


def _save_state(
    path: Path,
    model: torch.nn.Module,
    opt: Optimisation,
    epoch: int,
    best_value: float,
    best_epoch: int,
    bad_epochs: int,
) -> None:
    state = {
        "model": model.state_dict(),
        **opt.state_dict(),
        "epoch": epoch,
        "best_value": best_value,
        "best_epoch": best_epoch,
        "bad_epochs": bad_epochs,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


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
