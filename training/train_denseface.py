"""Train DenseFace (DenseNet-BC-100, k=12) on FER+ and write the safetensors weights the paper profile uses.

FER+ is the user's to supply (it is not redistributable here): the standard ``fer2013.csv``
(``emotion,pixels,Usage``; 48x48 gray faces as 2304 space-separated values) and Microsoft's
``fer2013new.csv`` (``Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,
unknown,NF``: ten annotators' votes per row, rows aligned with fer2013.csv).

    python -m training.train_denseface --fer2013 fer2013.csv --ferplus fer2013new.csv \
        --out runs/denseface/denseface_ferplus.safetensors --epochs 60 --device cuda

Labels use FER+'s "majority" mode, as in its reference code: single votes are dropped as outliers, a
face is kept when one emotion has more than half of the remaining votes, and faces whose majority is
"unknown" or "not a face" are discarded. Splits: Training / PublicTest (validation, picks the best
epoch) / PrivateTest (reported). Faces are resized 48 -> 64 and normalised with mean 131.0754 and
std 47.858 (``models.encoders.denseface.preprocess``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.encoders.denseface import (
    FERPLUS_CLASSES,
    INPUT_SIZE,
    DenseFace,
    DenseFaceConfig,
    preprocess,
    save_denseface,
)

VOTE_COLUMNS: tuple[str, ...] = (*FERPLUS_CLASSES, "unknown", "NF")
SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


@dataclass
class FerPlusSplit:
    images: np.ndarray  # uint8 [N, 64, 64]
    labels: np.ndarray  # int64 [N], index into FERPLUS_CLASSES


def majority_label(votes: list[float]) -> int | None:
    """FER+ majority mode over the 10 vote columns; None when the face is discarded."""
    v = [0.0 if x < 1.0 + 1e-9 else float(x) for x in votes]  # single votes are outliers
    total = sum(v)
    if total <= 0:
        return None
    best = int(np.argmax(v))
    if v[best] <= 0.5 * total:
        return None  # no majority: FER+ sets it to unknown
    return best if best < len(FERPLUS_CLASSES) else None  # unknown / not-a-face


def _resize(img48: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(img48, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)


def load_ferplus(fer2013: str | Path, ferplus: str | Path) -> dict[str, FerPlusSplit]:
    """Read both CSVs into train/val/test splits of 64x64 faces with majority-vote labels."""
    fer2013, ferplus = Path(fer2013), Path(ferplus)
    for p in (fer2013, ferplus):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found; FER+ needs fer2013.csv and fer2013new.csv")
    with open(fer2013, newline="") as f:
        base = list(csv.DictReader(f))
    with open(ferplus, newline="") as f:
        votes = list(csv.DictReader(f))
    if len(base) != len(votes):
        raise ValueError(f"{fer2013} has {len(base)} rows but {ferplus} has {len(votes)}; they must align")
    if base and not {"pixels", "Usage"} <= set(base[0]):
        raise ValueError(f"{fer2013}: expected columns emotion,pixels,Usage, got {list(base[0])}")
    if votes and not set(VOTE_COLUMNS) <= set(votes[0]):
        raise ValueError(f"{ferplus}: expected vote columns {VOTE_COLUMNS}, got {list(votes[0])}")
    data: dict[str, tuple[list[np.ndarray], list[int]]] = {s: ([], []) for s in SPLITS.values()}
    for i, (b, v) in enumerate(zip(base, votes, strict=True)):
        if b["Usage"] != v["Usage"]:
            raise ValueError(f"row {i + 2}: Usage differs between the files ({b['Usage']} vs {v['Usage']})")
        split = SPLITS.get(b["Usage"])
        label = majority_label([float(v[c] or 0) for c in VOTE_COLUMNS])
        if split is None or label is None:
            continue
        pix = np.array(b["pixels"].split(), dtype=np.float32)
        if pix.size != 48 * 48:
            raise ValueError(f"row {i + 2}: expected 2304 pixels, got {pix.size}")
        data[split][0].append(_resize(pix.reshape(48, 48).clip(0, 255).astype(np.uint8)))
        data[split][1].append(label)
    return {
        s: FerPlusSplit(
            np.stack(imgs) if imgs else np.zeros((0, INPUT_SIZE, INPUT_SIZE), np.uint8),
            np.array(labels, dtype=np.int64),
        )
        for s, (imgs, labels) in data.items()
    }


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and +-4 px translation (zero-padded) of normalised [N, 1, 64, 64]."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (4, 4, 4, 4))
    dx, dy = torch.randint(0, 9, (2, n), generator=gen)
    return torch.stack([padded[i, :, dy[i] : dy[i] + 64, dx[i] : dx[i] + 64] for i in range(n)])


@torch.inference_mode()
def accuracy(model: DenseFace, split: FerPlusSplit, device: torch.device, batch: int = 256) -> float:
    if len(split.labels) == 0:
        return float("nan")
    model.eval()
    correct = 0
    for i in range(0, len(split.labels), batch):
        logits, _ = model(preprocess(split.images[i : i + batch]).to(device))
        correct += int((logits.argmax(-1).cpu() == torch.from_numpy(split.labels[i : i + batch])).sum())
    return correct / len(split.labels)


def train(
    splits: dict[str, FerPlusSplit],
    out: str | Path,
    epochs: int = 60,
    batch_size: int = 64,
    lr: float = 0.1,
    weight_decay: float = 1e-4,
    device: str = "cpu",
    seed: int = 0,
    log: bool = True,
    config: DenseFaceConfig | None = None,
) -> dict[str, float]:
    """SGD with Nesterov momentum and cosine decay; keeps the best validation epoch. Returns metrics.

    ``config`` defaults to the paper's DenseNet-BC-100 (k=12); a smaller one is for quick checks.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    dev = torch.device(device)
    model = DenseFace(config or DenseFaceConfig()).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    tr = splits["train"]
    if len(tr.labels) == 0:
        raise ValueError("no training faces after FER+ majority filtering")
    steps = epochs * math.ceil(len(tr.labels) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    x_all = preprocess(tr.images)  # [N, 1, 64, 64]
    y_all = torch.from_numpy(tr.labels)
    best_val, best_state, history = -1.0, None, []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(y_all), generator=gen)
        total, t0 = 0.0, time.perf_counter()
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            x = augment(x_all[idx], gen).to(dev)
            loss = F.cross_entropy(model(x)[0], y_all[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        val = accuracy(model, splits["val"], dev)
        history.append({"epoch": epoch + 1, "loss": total / len(y_all), "val_acc": val})
        if log:
            print(
                f"epoch {epoch + 1}/{epochs} loss {total / len(y_all):.4f} val acc {val:.4f} "
                f"({time.perf_counter() - t0:.1f} s)"
            )
        score = -history[-1]["loss"] if math.isnan(val) else val
        if score > best_val or best_state is None:
            best_val = score
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    metrics = {
        "val_acc": accuracy(model, splits["val"], dev),
        "test_acc": accuracy(model, splits["test"], dev),
        "epochs": float(epochs),
        "train_faces": float(len(tr.labels)),
    }
    save_denseface(out, model.cpu(), extra={"metrics": metrics, "history": history, "label_mode": "majority"})
    return metrics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.train_denseface",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--fer2013", required=True, type=Path)
    ap.add_argument("--ferplus", required=True, type=Path, help="fer2013new.csv (FER+ votes)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    splits = load_ferplus(args.fer2013, args.ferplus)
    print({k: len(v.labels) for k, v in splits.items()})
    metrics = train(
        splits, args.out, args.epochs, args.batch_size, args.lr, device=args.device, seed=args.seed
    )
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
