"""What a training run writes and remembers while its epochs run: where the epochs stand (resumable from
``last_state.pt``), the rows of ``metrics.csv`` and TensorBoard, the history, and the selected epoch as
trained (``selected.safetensors``). ``training.loop.train`` puts them together; the finished checkpoint
is written once after training (``training.fit.finalize``)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from models.checkpoint import save_checkpoint
from models.config_io import to_dict
from training.config import TrainConfig
from training.data.dataset import DataSplits, Normalizer
from training.evaluation.conditions import ConditionReport
from training.loop.distributed import DistInfo
from training.loop.model_setup import checkpoint_extra
from training.loop.parts import Optimisation

STATE_FILE = "last_state.pt"
BEST_FILE = "best.safetensors"  # the finished checkpoint, written once
SELECTED_FILE = "selected.safetensors"  # the selected epoch as trained: resumable state


@dataclass
class Run:
    """What one training run works with, built once, in this order, from its config and data."""

    cfg: TrainConfig
    out: Path
    dinfo: DistInfo
    device: torch.device
    splits: DataSplits
    normalizer: Normalizer
    max_len: dict[str, int]
    data: Any  # parts.DataLoaders
    adapter: Any
    core: torch.nn.Module  # the model itself (under DDP: the wrapped module)
    model: torch.nn.Module  # what the optimiser steps (DDP or the model)
    experts: Any
    cond_sampler: Any
    opt: Optimisation


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


class CsvLog:
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


def epoch_row(
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


@dataclass
class Progress:
    """Where the epochs stand: the selected epoch, its value, the epochs since it, the history."""

    start_epoch: int = 0
    best_value: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    epoch: int = -1
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def resumed(cls, run: Run) -> Progress:
        """From ``last_state.pt`` (weights and optimisation restored into ``run``), or a fresh start."""
        path = run.out / STATE_FILE
        if not path.is_file():
            return cls()
        state = torch.load(path, map_location=run.device, weights_only=True)
        run.core.load_state_dict(state["model"])
        run.opt.load_state_dict(state)
        history_file = run.out / "history.json"
        return cls(
            start_epoch=int(state["epoch"]) + 1,
            best_value=float(state["best_value"]),
            best_epoch=int(state["best_epoch"]),
            bad_epochs=int(state["bad_epochs"]),
            history=json.loads(history_file.read_text()) if history_file.is_file() else [],
        )

    def record(self, epoch: int, value: float) -> bool:
        """One epoch's validation value; True when it is the new selected epoch."""
        self.epoch = epoch
        improved = value > self.best_value
        if improved:
            self.best_value, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    def result(self, run: Run) -> TrainResult:
        return TrainResult(
            out_dir=run.out,
            best_checkpoint=run.out / BEST_FILE,
            best_epoch=self.best_epoch + 1,
            best_value=self.best_value,
            selection_metric=run.cfg.selection_metric,
            epochs_run=self.epoch + 1,
            stopped_early=self.stopped_early,
            history=self.history,
        )


class RunOutputs:
    """What the main rank writes while the epochs run: metrics.csv, TensorBoard, config.yaml, the
    history, the resumable state and the selected epoch. Other ranks write nothing."""

    def __init__(self, run: Run, resumed: bool) -> None:
        self.run = run
        main = run.dinfo.is_main
        self.log = CsvLog(run.out / "metrics.csv", resume=resumed) if main else None
        self.tb = tensorboard(run.out, run.cfg.log) if main else None
        self.extra_base = checkpoint_extra(run.cfg, run.splits, run.normalizer)
        if main:
            (run.out / "config.yaml").write_text(yaml.safe_dump(to_dict(run.cfg), sort_keys=False))

    def epoch(self, row: dict[str, Any], progress: Progress, selected: dict[str, Any] | None) -> None:
        """One epoch's row; ``selected``: the training summary of a new selected epoch, else None."""
        run = self.run
        if not run.dinfo.is_main:
            return
        assert self.log is not None
        self.log.write(row)
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, int | float) and k != "epoch":
                    self.tb.add_scalar(k, v, row["epoch"])
        if selected is not None:
            extra = {**self.extra_base, "training_summary": selected}
            save_checkpoint(run.out / SELECTED_FILE, run.core, extra)
        save_state(
            run.out / STATE_FILE, run.core, run.opt, progress.epoch, progress.best_value,
            progress.best_epoch, progress.bad_epochs,
        )
        (run.out / "history.json").write_text(json.dumps(progress.history))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def tensorboard(out: Path, log: str) -> Any:
    if log == "csv":
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # tensorboard is an optional package
        raise ImportError(
            "log: tensorboard needs the 'tensorboard' package (pip install tensorboard), or use log: csv"
        ) from e
    return SummaryWriter(str(out / "tb"))


def save_state(
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
