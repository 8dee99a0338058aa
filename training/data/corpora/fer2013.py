"""FER2013: 48x48 gray face images with an expression label (Goodfellow et al., ICML 2013 challenge).

Two layouts; ``root`` is the file itself or a folder holding it (the csv wins when both are there, being
the full seven-class original):

* ``fer2013.csv``, the original Kaggle file: columns ``emotion,pixels,Usage``; emotion 0 Angry, 1 Disgust,
  2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral; Usage Training / PublicTest / PrivateTest (-> train / val
  / test); pixels are 2304 space-separated ints, a 48x48 image in row order. Ids are
  ``fer2013:{Usage}_{row:05d}`` with the 0-based data row of the file.
* ``fer2013-4class.npz``, a four-class copy of the same images: arrays ``images`` uint8 [N, 48, 48],
  ``label`` (ang / hap / neu / sad), ``split`` (train / val / test) and ``name`` (the original image file,
  e.g. ``PrivateTest_10131363.jpg``). Ids are ``fer2013:{name stem}``.

There is no audio, video or speaker: ``image`` returns the sample's uint8 [48, 48] gray image, speaker is
the sample's own id (each image its own unit for grouped splits) and group is ``fer2013:{split}``.
The images are read on the first ``image()`` call, once per listing, into one array that every sample's
``image`` indexes; listing itself reads only the labels.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np

from training.data.corpora import layout_error
from training.data.corpus import Utterance, normalise_label

CORPUS = "fer2013"
SOURCE = (
    "FER2013 (Goodfellow et al., ICML 2013 workshop challenge) is for research use; the csv comes from "
    "Kaggle's 'Challenges in Representation Learning: Facial Expression Recognition Challenge'."
)
EXPECTED = "fer2013.csv (emotion,pixels,Usage) or fer2013-4class.npz (images,label,split,name)"
CSV_NAME = "fer2013.csv"
NPZ_NAME = "fer2013-4class.npz"
SIDE = 48
# Kaggle codes: 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral.
CSV_EMOTIONS: dict[str, str] = {
    "0": "ang", "1": "dis", "2": "fea", "3": "hap", "4": "sad", "5": "sur", "6": "neu"
}  # fmt: skip
USAGE_SPLITS: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


class SharedImages:
    """All images of one file, read on first use (thread-safe) and shared by every sample's ``image``."""

    def __init__(self, read: Callable[[], np.ndarray], count: int, source: Path) -> None:
        self._read, self._count, self._source = read, count, source
        self._images: np.ndarray | None = None
        self._lock = threading.Lock()

    def array(self) -> np.ndarray:
        with self._lock:
            if self._images is None:
                images = self._read()
                if images.shape != (self._count, SIDE, SIDE) or images.dtype != np.uint8:
                    raise ValueError(
                        f"{self._source}: expected uint8 images [{self._count}, {SIDE}, {SIDE}], "
                        f"got {images.dtype} {list(images.shape)}"
                    )
                images.flags.writeable = False  # shared: nobody may change another sample's image
                self._images = images
            return self._images

    def row(self, index: int) -> np.ndarray:
        """A copy of one image, so a caller may change it freely."""
        return self.array()[index].copy()


def _find(root: Path) -> Path | None:
    if root.is_file() and root.name.endswith((".csv", ".npz")):
        return root
    # Kaggle's archive unpacks to fer2013/fer2013.csv, so that folder is looked into as well.
    for folder in (root, root / "fer2013"):
        for name in (CSV_NAME, NPZ_NAME):
            if (folder / name).is_file():
                return folder / name
    return None


def _utterance(
    name: str, label: str | None, split: str, raw_label: str, image: Callable[[], np.ndarray]
) -> Utterance:
    uid = f"{CORPUS}:{name}"
    return Utterance(
        id=uid,
        label=label,
        speaker=uid,
        group=f"{CORPUS}:{split}",
        audio_path=None,
        video_path=None,
        transcript=None,
        extra={"raw_label": raw_label},
        corpus=CORPUS,
        split=split,
        image=image,
    )


def _list_npz(path: Path) -> list[Utterance]:
    with np.load(path) as z:
        missing = {"images", "label", "split", "name"} - set(z.files)
        if missing:
            expected = f"{EXPECTED}; missing arrays {sorted(missing)}"
            raise layout_error(path, "the FER2013 npz", expected, SOURCE)
        labels, splits, names = (z[k].astype(str).tolist() for k in ("label", "split", "name"))

    def read() -> np.ndarray:
        with np.load(path) as z:
            return z["images"]

    shared = SharedImages(read, len(names), path)
    out = [
        _utterance(Path(name).stem, normalise_label(label), split, label, partial(shared.row, i))
        for i, (name, label, split) in enumerate(zip(names, labels, splits, strict=True))
    ]
    return sorted(out, key=lambda u: u.id)


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    """The csv's data rows one at a time, so that no more than one row's pixel text is held at once."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"emotion", "pixels", "Usage"} <= set(reader.fieldnames):
            raise layout_error(path, "the FER2013 csv", f"{EXPECTED}; header {reader.fieldnames}", SOURCE)
        yield from reader


def _read_csv_pixels(path: Path) -> np.ndarray:
    images: list[np.ndarray] = []
    for i, row in enumerate(_csv_rows(path)):
        pixels = np.fromstring(row["pixels"], dtype=np.uint8, sep=" ")  # C parser: ~30 us per image
        if pixels.size != SIDE * SIDE:
            raise ValueError(f"{path}: data row {i} has {pixels.size} pixels, expected {SIDE * SIDE}")
        images.append(pixels.reshape(SIDE, SIDE))
    return np.stack(images) if images else np.zeros((0, SIDE, SIDE), np.uint8)


def _list_csv(path: Path) -> list[Utterance]:
    # Listing keeps only the two short columns; the pixels are parsed on the first image() call.
    rows = [(row["Usage"].strip(), row["emotion"].strip()) for row in _csv_rows(path)]
    shared = SharedImages(partial(_read_csv_pixels, path), len(rows), path)
    out: list[Utterance] = []
    for i, (usage, code) in enumerate(rows):
        if usage not in USAGE_SPLITS or code not in CSV_EMOTIONS:
            raise ValueError(f"{path}: data row {i} has Usage {usage!r} / emotion {code!r}, not FER2013's")
        image = partial(shared.row, i)
        out.append(_utterance(f"{usage}_{i:05d}", CSV_EMOTIONS[code], USAGE_SPLITS[usage], code, image))
    return sorted(out, key=lambda u: u.id)


def list_fer2013(root: Path) -> list[Utterance]:
    """Every FER2013 image in the csv or npz at (or in) root, with its label and official split."""
    root = Path(root)
    path = _find(root)
    if path is None:
        raise layout_error(root, "FER2013", EXPECTED, SOURCE)
    return _list_csv(path) if path.suffix == ".csv" else _list_npz(path)
