"""CMU-MOSI three-modality utterance features (binary sentiment), as bundled in data/mosi-trimodal.

Files (see data/README.md): ``{text,audio,video}/{m}_{train,test}0.csv`` hold one row per utterance,
aligned across modalities, whose last column is the label (0 negative, 1 positive); text 100-d,
audio 73-d, video 100-d. ``text_{split}.csv``'s first column is the row index into ``transcripts.csv``
(utterance id ``<video>_<n>``, transcript, video number, label), which gives each row its utterance id
and video. The train/test split is speaker independent (one speaker per video); validation is carved
from train by whole videos, so model selection never sees a test speaker or a validation speaker in
training. Each utterance is ONE vector per modality: L_n = 1.

Caveat, measured on these files: the text and video vectors of the TRAIN split are near-separable
(logistic regression on text: 98% train, 99% on a validation carved from train, 75.5% on test; video:
92% on validation, 52% on test), while audio (openSMILE) is not (45-49% on validation). The text and
video extractors were evidently fitted with the train labels. Validation carved from train therefore
overstates text/video strength, and a fusion model learns to trust them more than the test set warrants;
model selection on it is still the only honest option (test is never used for it).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from training.data.dataset import DataSplits, Sample
from training.data.splits import grouped_split

MOSI_DIMS: dict[str, int] = {"text": 100, "audio": 73, "video": 100}
MOSI_CLASSES: tuple[str, ...] = ("negative", "positive")


def _read_matrix(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"MOSI feature file not found: {path} (see data/README.md for the layout)")
    with open(path, newline="") as f:
        rows = [[float(x) for x in r] for r in csv.reader(f) if r]
    return np.asarray(rows, dtype=np.float64)


def _read_split(root: Path, split: str) -> list[Sample]:
    mats = {m: _read_matrix(root / m / f"{m}_{split}0.csv") for m in ("text", "audio", "video")}
    n = {len(v) for v in mats.values()}
    if len(n) != 1:
        raise ValueError(f"MOSI {split}: modality files have different row counts {n}")
    labels = mats["text"][:, -1].astype(np.int64)
    for m, x in mats.items():
        if not np.array_equal(x[:, -1].astype(np.int64), labels):
            raise ValueError(f"MOSI {split}: labels of {m} rows disagree with text rows")
        if x.shape[1] - 1 != MOSI_DIMS[m]:
            raise ValueError(f"MOSI {split}/{m}: expected {MOSI_DIMS[m]} features, got {x.shape[1] - 1}")
    with open(root / "transcripts.csv", newline="") as f:
        transcripts = list(csv.reader(f))
    index = _read_matrix(root / f"text_{split}.csv")[:, 0].astype(np.int64)
    if len(index) != len(labels):
        raise ValueError(f"MOSI {split}: text_{split}.csv has {len(index)} rows, features have {len(labels)}")
    samples = []
    for row, t_idx in enumerate(index):
        utt_id, _, _, t_label = transcripts[int(t_idx)][:4]
        if int(t_label) != labels[row]:
            raise ValueError(
                f"MOSI {split} row {row}: transcript label {t_label} != feature label {labels[row]}"
            )
        video = utt_id.rsplit("_", 1)[0]
        feats = {
            m: mats[m][row : row + 1, :-1].astype(np.float32) for m in ("text", "audio", "video")
        }  # [1, D]
        samples.append(Sample(id=utt_id, group=video, label=int(labels[row]), features=feats, speaker=video))
    return samples


def load_mosi(root: str | Path, val_fraction: float = 0.2, seed: int = 0) -> DataSplits:
    """Train / validation (grouped by video, ``val_fraction`` of train) / test splits of MOSI."""
    root = Path(root)
    train_all = _read_split(root, "train")
    test = _read_split(root, "test")
    overlap = {s.group for s in train_all} & {s.group for s in test}
    if overlap:
        raise ValueError(
            f"MOSI train and test share videos {sorted(overlap)[:5]}: split is not speaker independent"
        )
    train, val = grouped_split(train_all, val_fraction, seed)
    return DataSplits(
        train=train,
        val=val,
        test=test,
        dims=dict(MOSI_DIMS),
        class_names=MOSI_CLASSES,
        description={
            "source": "mosi-trimodal",
            "val_rule": "grouped by video",
            "val_fraction": val_fraction,
            "split_seed": seed,
            "val_groups": sorted({s.group for s in val}),
        },
    )
