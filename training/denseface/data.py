"""FER2013's four classes as the engine sees a face: 64x64 gray crops made by the engine's own face path.

The bundled ``fer2013-4class.npz`` holds 48x48 stills with the official splits (Training -> train,
PublicTest -> val, PrivateTest -> test). The engine never sees a still: it detects the face in a video
frame (BlazeFace), crops it square with ``face.margin`` and converts it to gray. So each still is placed
on a frame as a webcam face would be (``training.data.face_views.still_views``, view 0: the still as it is),
the detector runs on that frame, and the largest face is cropped with the engine's ``crop_face``. Where
the detector finds no face (small or odd stills), the crop is taken around the still's own square on the
frame, the box a detector would have drawn; how many is reported (``fallback``).

Crops are cached (``cache``, an .npz keyed by the source file's digest, the detector file and the margin):
the detector pass over 26k stills takes minutes on 2 cores, a training run reads the cache at once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.files import file_sha256
from models.labels import FOUR_CLASSES

FER4_SPLITS = ("train", "val", "test")


@dataclass
class FaceSplit:
    images: np.ndarray  # uint8 [N, 64, 64]
    labels: np.ndarray  # int64 [N], index into the class names


def engine_crops(
    stills: np.ndarray, keys: list[str], margin: float = 0.1, size: int = 64
) -> tuple[np.ndarray, int]:
    """uint8 [N, h, w] stills -> (uint8 [N, size, size] crops through the engine's face path, how many
    fell back to the still's own square because the detector found no face)."""
    from models.encoders.face import FaceBox, FaceDetector, FaceSelector, crop_face
    from training.data.face_views import CANVAS, FACE, still_views

    off = (CANVAS - FACE) // 2
    own = FaceBox(off, off, off + FACE, off + FACE, 0.0, ())
    out = np.zeros((len(stills), size, size), np.uint8)
    fallback = 0
    select = FaceSelector("largest")  # the engine's choice among a frame's faces
    with FaceDetector() as det:
        for i, (img, key) in enumerate(zip(stills, keys, strict=True)):
            frame = still_views(img, 1, key)[0]
            box = select(det.detect(frame))
            fallback += box is None
            out[i] = crop_face(frame, box or own, margin, size)
    return out, fallback


def _splits(crops: np.ndarray, labels: np.ndarray, splits: np.ndarray, fallback: int):
    y = np.array([FOUR_CLASSES.index(c) for c in labels], np.int64)
    out = {s: FaceSplit(crops[splits == s], y[splits == s]) for s in FER4_SPLITS}
    counts = {s: int((splits == s).sum()) for s in FER4_SPLITS} | {"fallback": int(fallback)}
    return out, counts


def load_fer4(  # noqa: C901 - one check per layout of the file
    npz: str | Path, cache: str | Path | None = None, margin: float = 0.1, limit: int | None = None
) -> tuple[dict[str, FaceSplit], dict[str, int]]:
    """The four-class FER2013 splits as engine crops, and counts (faces per split, fallbacks).

    ``npz`` is the bundled stills (``images``, ``label``, ``split``, ``name``), a crops file this
    function cached before (``crops``, ``label``, ``split``, ``fallback``) or one ``pack`` wrote (the
    crops as JPEG): the last two are self-contained, so a machine without the stills or the face
    detector (a GPU box) trains from them. ``limit`` keeps the first ``limit`` faces of each class in
    each split (tests and quick checks)."""
    npz = Path(npz)
    if not npz.is_file():
        raise FileNotFoundError(f"{npz} not found; the bundled FER2013 faces are data/fer2013-4class.npz")
    with np.load(npz, allow_pickle=False) as d:
        if "jpeg" in d.files:
            crops = _unpack(d["jpeg"], d["offsets"])
            return _splits(crops, d["label"].astype(str), d["split"].astype(str), int(d["fallback"]))
        if "crops" in d.files:
            return _splits(d["crops"], d["label"].astype(str), d["split"].astype(str), int(d["fallback"]))
        missing = {"images", "label", "split", "name"} - set(d.files)
        if missing:
            raise ValueError(f"{npz}: missing arrays {sorted(missing)} (expected images, label, split, name)")
        images, labels, splits, names = d["images"], d["label"].astype(str), d["split"].astype(str), d["name"]
    unknown = sorted(set(labels) - set(FOUR_CLASSES))
    if unknown:
        raise ValueError(f"{npz}: labels {unknown} are not among {FOUR_CLASSES}")
    keep = np.zeros(len(labels), bool)
    for s in FER4_SPLITS:
        for c in FOUR_CLASSES:
            idx = np.flatnonzero((splits == s) & (labels == c))
            keep[idx[:limit] if limit is not None else idx] = True
    tag = json.dumps({"npz": file_sha256(npz), "margin": margin, "limit": limit, "face_path": 1})
    cache_file = None
    if cache is not None:
        cache_file = Path(cache) / f"fer4-crops-{hashlib.sha256(tag.encode()).hexdigest()[:16]}.npz"
        if cache_file.is_file():
            return load_fer4(cache_file)
    crops, fallback = engine_crops(images[keep], [str(n) for n in names[keep]], margin)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp, crops=crops, label=labels[keep], split=splits[keep], fallback=fallback, tag=tag
        )
        tmp.replace(cache_file)
    return _splits(crops, labels[keep], splits[keep], fallback)


def pack(splits: dict[str, FaceSplit], fallback: int, out: str | Path, quality: int = 90) -> int:
    """Write the crops as one small self-contained file: each crop a JPEG (quality 90: 47 MB for all
    26k faces against 107 MB raw, 1.6 grey levels of mean error, as a browser's JPEG frames carry).
    Returns the bytes written."""
    import cv2

    blobs, labels, split_names = [], [], []
    for name, sp in splits.items():
        for img, y in zip(sp.images, sp.labels, strict=True):
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            blobs.append(buf.ravel())
            labels.append(FOUR_CLASSES[int(y)])
            split_names.append(name)
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, jpeg=np.concatenate(blobs), offsets=offsets, label=np.array(labels),
             split=np.array(split_names), fallback=fallback)  # fmt: skip
    return out.stat().st_size


def _unpack(jpeg: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    import cv2

    spans = zip(offsets[:-1], offsets[1:], strict=True)
    crops = [cv2.imdecode(jpeg[a:b], cv2.IMREAD_GRAYSCALE) for a, b in spans]
    return np.stack(crops) if crops else np.zeros((0, 64, 64), np.uint8)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(
        prog="python -m training.denseface_data",
        description="Crop the four-class FER2013 stills by the engine's face path and pack the crops "
        "into one self-contained file (for training on a machine without the stills or the detector).",
    )
    ap.add_argument("npz", type=Path, help="data/fer2013-4class.npz")
    ap.add_argument("--pack", required=True, type=Path, help="the packed crops to write (.npz)")
    ap.add_argument("--cache", type=Path, default=Path("runs/denseface/cache"))
    args = ap.parse_args(argv)
    try:
        splits, counts = load_fer4(args.npz, args.cache)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = pack(splits, counts["fallback"], args.pack)
    print(json.dumps({"faces": counts, "packed": str(args.pack), "mb": round(size / 1e6, 1)}))
    return 0
