"""Train DenseFace (DenseNet-BC-100, k=12) and write the safetensors weights the face path loads.

Two datasets:

* ``--fer4 data/fer2013-4class.npz`` (bundled): FER2013's four classes (ang, hap, neu, sad) with the
  official splits, each still cropped by the engine's own face path (``training.denseface.data``).
* ``--fer2013 fer2013.csv --ferplus fer2013new.csv``: FER+ (8 classes), the paper's labels, for users who
  hold the original ``fer2013.csv`` (``emotion,pixels,Usage``; 48x48 gray faces as 2304 space-separated
  values) next to Microsoft's ``fer2013new.csv`` (``Usage,Image name,neutral,happiness,surprise,sadness,
  anger,disgust,fear,contempt,unknown,NF``: ten annotators' votes per row, rows aligned with fer2013.csv).
  Labels use FER+'s "majority" mode, as in its reference code: single votes are dropped as outliers, a
  face is kept when one emotion has more than half of the remaining votes, and faces whose majority is
  "unknown" or "not a face" are discarded. Faces are resized 48 -> 64.

    python -m training.train_denseface --fer4 ../shared/data/fer2013-4class.npz \
        --out runs/denseface/denseface_fer4.safetensors --epochs 30 [--stem-stride 2] \
        [--device cuda --amp] [--epochs-this-run N | --time-budget-min M]

Splits: Training / PublicTest (validation: picks the best epoch by UAR) / PrivateTest (reported).
Normalisation: mean 131.0754, std 47.858 (``models.encoders.denseface.preprocess``). The loop
(``training.denseface.fit``) is seeded and resumable: its state goes next to ``--out`` after every
epoch, and the same command run again goes on from there. On 2 CPU cores the paper's network trains at
about 2.3 faces per second (an epoch of the 21k FER2013 training faces: about 2.5 h), so train it on a
GPU or as several resumed runs (``benchmarks/face_models.py`` measures it).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from models.encoders.denseface import FERPLUS_CLASSES, INPUT_SIZE, DenseFaceConfig
from models.labels import FOUR_CLASSES
from training.denseface.data import FaceSplit
from training.denseface.fit import fit

VOTE_COLUMNS: tuple[str, ...] = (*FERPLUS_CLASSES, "unknown", "NF")
SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


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


def load_ferplus(fer2013: str | Path, ferplus: str | Path) -> dict[str, FaceSplit]:
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
        s: FaceSplit(
            np.stack(imgs) if imgs else np.zeros((0, INPUT_SIZE, INPUT_SIZE), np.uint8),
            np.array(labels, dtype=np.int64),
        )
        for s, (imgs, labels) in data.items()
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.train_denseface",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--fer4", type=Path, help="the bundled four-class FER2013 faces (.npz)")
    ap.add_argument("--fer2013", type=Path, help="fer2013.csv (with --ferplus)")
    ap.add_argument("--ferplus", type=Path, help="fer2013new.csv (FER+ votes)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--stem-stride", type=int, default=1, choices=(1, 2),
                    help="2: the first dense block at half the side (a third of the cost)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--state", type=Path, help="resumable state (default: OUT with .state.pt)")
    ap.add_argument("--epochs-this-run", type=int, help="stop after this many epochs (resume later)")
    ap.add_argument("--time-budget-min", type=float,
                    help="stop after the epoch that passes this many minutes")  # fmt: skip
    ap.add_argument("--crops-cache", type=Path, default=Path("runs/denseface/cache"),
                    help="where --fer4's engine crops are cached")
    ap.add_argument("--limit", type=int, help="--fer4: faces per class and split (quick checks)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if (args.fer4 is None) == (args.fer2013 is None or args.ferplus is None):
        print("error: give either --fer4 NPZ or both --fer2013 CSV and --ferplus CSV", file=sys.stderr)
        return 2
    try:
        if args.fer4 is not None:
            from training.denseface.data import load_fer4

            splits, counts = load_fer4(args.fer4, args.crops_cache, limit=args.limit)
            names: tuple[str, ...] = FOUR_CLASSES
        else:
            splits = load_ferplus(args.fer2013, args.ferplus)
            counts, names = {k: len(v.labels) for k, v in splits.items()}, FERPLUS_CLASSES
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"faces": counts}))
    state = args.state or args.out.with_suffix(".state.pt")
    result = fit(
        splits, args.out, names, config=DenseFaceConfig(num_classes=len(names), stem_stride=args.stem_stride),
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device, seed=args.seed,
        state=state, epochs_this_run=args.epochs_this_run,
        time_budget_s=None if args.time_budget_min is None else 60.0 * args.time_budget_min,
        amp=args.amp, progress=not args.no_progress,
    )  # fmt: skip
    summary = {k: v for k, v in result.items() if k != "history"}
    again = f"run the same command again to go on ({state})"
    summary["next"] = f"written {args.out}" if result["done"] else again
    print(json.dumps(summary))
    return 0
