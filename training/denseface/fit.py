"""DenseFace's training loop: seeded, resumable, with progress; AMP on a GPU.

``fit`` trains on 64x64 gray faces (``FaceSplit``-like: ``images`` uint8 [N, 64, 64], ``labels``) with SGD
(Nesterov, cosine decay over all epochs), a class-balanced loss (the measure is UAR) and the augmentation
of FER practice (``augment``). It keeps the best epoch by validation UAR and writes it as safetensors with
its config, class names and metrics.

Resumable: after every epoch the whole state (weights, optimiser, schedule, random generators, history,
best epoch) goes to ``state`` (``torch.save``, read back with ``weights_only=True``). The same command run
again continues from there, and gives the same weights as one uninterrupted run. ``epochs_this_run`` and
``time_budget_s`` end a run early (after a whole epoch), so a long training is planned as several runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.encoders.denseface import MEAN, STD, DenseFace, DenseFaceConfig, preprocess, save_denseface
from models.metrics import classification_metrics

BLACK = (0.0 - MEAN) / STD  # a black pixel, normalised


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Normalised [N, 1, 64, 64] -> the same faces flipped (half), rotated (+-10 deg), scaled (0.9-1.1),
    shifted (+-4 px) and re-lit (contrast 0.8-1.2, brightness +-0.25 std), each draw from ``gen``."""
    n = x.shape[0]
    u = torch.rand(n, 5, generator=gen).to(x.device)  # drawn on the CPU: the same faces on any device
    angle = (u[:, 0] * 2 - 1) * math.radians(10.0)
    scale = 0.9 + 0.2 * u[:, 1]
    shift = (u[:, 2:4] * 2 - 1) * (4.0 / 32.0)  # affine_grid works in [-1, 1]: 32 px per unit at 64 px
    flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)  # fmt: skip
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # what enters from outside the crop is black, as crop_face pads a face at the frame's edge
    y = F.grid_sample(x - BLACK, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + BLACK
    light = torch.rand(n, 2, generator=gen).to(x.device)
    contrast = (0.8 + 0.4 * light[:, 0]).view(n, 1, 1, 1)
    bright = ((light[:, 1] * 2 - 1) * 0.25).view(n, 1, 1, 1)
    mean = y.mean(dim=(2, 3), keepdim=True)
    return (y - mean) * contrast + mean + bright


@torch.inference_mode()
def predict(model: DenseFace, images: np.ndarray, device: torch.device, batch: int = 256) -> np.ndarray:
    model.eval()
    out = [model(preprocess(images[i : i + batch]).to(device))[0].float().cpu()
           for i in range(0, len(images), batch)]  # fmt: skip
    return torch.cat(out).numpy() if out else np.zeros((0, model.config.num_classes), np.float32)


def scores(model: DenseFace, split: Any, device: torch.device) -> dict[str, float]:
    if len(split.labels) == 0:
        return {"uar": float("nan"), "war": float("nan"), "n": 0}
    logits = predict(model, split.images, device)
    m = classification_metrics(split.labels, logits.argmax(1), model.config.num_classes)
    return {"uar": m.uar, "war": m.war, "n": m.n}


def _class_weights(labels: np.ndarray, c: int) -> torch.Tensor:
    counts = np.bincount(labels, minlength=c).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (c * np.maximum(counts, 1)), 0.0)
    return torch.as_tensor(w, dtype=torch.float32)


def fit(
    splits: dict[str, Any],
    out: str | Path,
    class_names: tuple[str, ...],
    *,
    config: DenseFaceConfig | None = None,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 0.1,
    weight_decay: float = 1e-4,
    device: str = "cpu",
    seed: int = 0,
    state: str | Path | None = None,
    epochs_this_run: int | None = None,
    time_budget_s: float | None = None,
    amp: bool = False,
    progress: bool = True,
    log: bool = True,
) -> dict[str, Any]:
    """Train (or go on training) and, once every epoch is done, write the best epoch to ``out``.

    Returns ``{"done", "epoch", "history", "samples_per_s"}`` and, when done, the validation and test
    scores of the written weights."""
    cfg = config or DenseFaceConfig(num_classes=len(class_names))
    if cfg.num_classes != len(class_names):
        raise ValueError(f"config has {cfg.num_classes} classes, the data {len(class_names)}")
    tr = splits["train"]
    if len(tr.labels) == 0:
        raise ValueError("no training faces")
    dev = torch.device(device)
    run = _Run.build(cfg, dev, amp and dev.type == "cuda", seed, lr, weight_decay, epochs,
                     math.ceil(len(tr.labels) / batch_size))  # fmt: skip
    state_path = Path(state) if state is not None else None
    start, history, best = _resume(run, state_path, cfg, epochs, seed, log)
    weights = _class_weights(tr.labels, cfg.num_classes).to(dev)
    x_all, y_all = preprocess(tr.images).to(dev), torch.from_numpy(tr.labels).to(dev)  # 344 MB for FER2013
    t_run, seen, busy = time.perf_counter(), 0, 0.0
    epoch = start
    for epoch in range(start + 1, epochs + 1):
        t0 = time.perf_counter()
        total = _epoch(run, x_all, y_all, weights, batch_size, f"epoch {epoch}/{epochs}", progress)
        busy += time.perf_counter() - t0
        seen += len(y_all)
        val = scores(run.model, splits["val"], dev)
        history.append({"epoch": epoch, "loss": total / len(y_all), "val_uar": val["uar"],
                        "val_war": val["war"], "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
        if log:
            print(f"epoch {epoch}/{epochs} loss {total / len(y_all):.4f} val UAR {val['uar']:.4f} "
                  f"WAR {val['war']:.4f} ({history[-1]['seconds']} s)")  # fmt: skip
        score = -history[-1]["loss"] if math.isnan(val["uar"]) else val["uar"]
        if score > best["score"]:
            best = {"score": score, "epoch": epoch,
                    "weights": {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}}
        if state_path is not None:
            _save_state(run, state_path, cfg, epochs, seed, epoch, history, best)
        ran = epoch - start
        over_time = time_budget_s is not None and time.perf_counter() - t_run >= time_budget_s
        if epoch < epochs and ((epochs_this_run is not None and ran >= epochs_this_run) or over_time):
            break
    rate = round(seen / busy, 1) if busy > 0 else None
    result: dict[str, Any] = {"done": epoch >= epochs, "epoch": epoch, "history": history,
                              "samples_per_s": rate, "amp": run.amp}  # fmt: skip
    if result["done"]:
        _write_best(run.model, best, splits, dev, out, result, epochs, seed, class_names)
    return result


@dataclass
class _Run:
    """The model and its optimisation: SGD with Nesterov momentum, a cosine schedule over every step,
    the AMP scaler, and the generator every shuffle and augmentation draws from."""

    model: DenseFace
    opt: torch.optim.Optimizer
    sched: Any
    scaler: Any
    gen: torch.Generator
    dev: torch.device
    amp: bool

    @classmethod
    def build(
        cls, cfg: DenseFaceConfig, dev: torch.device, amp: bool, seed: int, lr: float, weight_decay: float,
        epochs: int, steps_per_epoch: int,
    ) -> _Run:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = DenseFace(cfg).to(dev)
        opt = torch.optim.SGD(
            model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs * steps_per_epoch, 1))
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        return cls(model, opt, sched, scaler, gen, dev, amp)


def _resume(
    run: _Run, state_path: Path | None, cfg: DenseFaceConfig, epochs: int, seed: int, log: bool
) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """Where an earlier run of the same config, epochs and seed stopped: the epoch, history and best."""
    if state_path is None or not state_path.is_file():
        return 0, [], {"score": -math.inf, "epoch": 0, "weights": None}
    st = torch.load(state_path, map_location="cpu", weights_only=True)
    if st["config"] != cfg.__dict__ or st["epochs"] != epochs or st["seed"] != seed:
        raise ValueError(
            f"{state_path} is a different run (config, epochs or seed); remove it or change --state"
        )
    run.model.load_state_dict(st["model"])
    run.opt.load_state_dict(st["opt"])
    run.sched.load_state_dict(st["sched"])
    run.gen.set_state(st["gen"])
    torch.set_rng_state(st["torch_rng"])
    if log:
        print(f"resuming after epoch {st['epoch']}/{epochs} from {state_path}")
    return st["epoch"], st["history"], st["best"]


def _epoch(
    run: _Run, x_all: torch.Tensor, y_all: torch.Tensor, weights: torch.Tensor, batch_size: int,
    desc: str, progress: bool,
) -> float:
    """One pass over the training faces in a fresh order, augmented; returns the summed loss."""
    from tqdm import tqdm

    model, dev = run.model, run.dev
    model.train()
    perm = torch.randperm(len(y_all), generator=run.gen)
    total = 0.0
    for i in tqdm(range(0, len(perm), batch_size), desc=desc, disable=not progress, leave=False):
        idx = perm[i : i + batch_size].to(dev)
        x, y = augment(x_all[idx], run.gen), y_all[idx]
        with torch.autocast(dev.type, dtype=torch.float16, enabled=run.amp):
            loss = F.cross_entropy(model(x)[0], y, weight=weights)
        run.opt.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.opt)
        run.scaler.update()
        run.sched.step()
        total += float(loss.detach()) * len(idx)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return total


def _save_state(
    run: _Run, state_path: Path, cfg: DenseFaceConfig, epochs: int, seed: int, epoch: int,
    history: list[dict[str, Any]], best: dict[str, Any],
) -> None:
    state_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_path.with_suffix(".tmp")
    torch.save({"config": dict(cfg.__dict__), "epochs": epochs, "seed": seed, "epoch": epoch,
                "model": run.model.state_dict(), "opt": run.opt.state_dict(), "sched": run.sched.state_dict(),
                "gen": run.gen.get_state(), "torch_rng": torch.get_rng_state(), "history": history,
                "best": best}, tmp)  # fmt: skip
    tmp.replace(state_path)


def _write_best(
    model: DenseFace, best: dict[str, Any], splits: dict[str, Any], dev: torch.device, out: str | Path,
    result: dict[str, Any], epochs: int, seed: int, class_names: tuple[str, ...],
) -> None:
    """The best epoch's weights, scored on validation and test, written to ``out`` with its history."""
    assert best["weights"] is not None
    model.load_state_dict(best["weights"])
    result.update({"best_epoch": best["epoch"], "val": scores(model, splits["val"], dev),
                   "test": scores(model, splits["test"], dev)})  # fmt: skip
    extra = {k: result[k] for k in ("best_epoch", "val", "test", "history")}
    save_denseface(out, model.cpu(), extra={**extra, "epochs": epochs, "seed": seed}, class_names=class_names)
