"""Still face images (FER2013) -> short pseudo-videos that go through the engine's own face path.

A labelled face photo has no time axis, but the engine reads faces from video: it detects the face in
every sampled frame, crops it square with a margin, converts it to gray and embeds it. So that training
sees what the engine sees, each still is placed on a larger canvas (the face then fills about half of
the frame, as a webcam face does), and ``views`` slightly different versions of that frame form one
"video": view 0 is the still as it is, the others move, scale, rotate, flip and re-light it a little,
the way a face moves between frames. Every view then goes through ``FaceFeatureExtractor.extract``
(BlazeFace detection, crop, mini-Xception), exactly as a live frame does; a view where the detector
finds no face is a frame without a face (presence False), as in the engine.
"""

from __future__ import annotations

import zlib

import numpy as np

CANVAS = 256  # frame side (pixels)
FACE = 144  # side of the still inside the frame (a 48x48 FER2013 face scaled by 3)


def _seed(key: str) -> int:
    return zlib.crc32(key.encode("utf-8"))


def _to_gray(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3:
        img = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def still_views(image: np.ndarray, views: int, key: str) -> list[np.ndarray]:
    """``views`` RGB uint8 [CANVAS, CANVAS, 3] frames of one still face (gray [H, W] or RGB [H, W, 3]).

    Deterministic per ``key`` (the utterance id), so re-extraction gives the same features.
    """
    import cv2

    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    gray = _to_gray(image)
    face = cv2.resize(gray, (FACE, FACE), interpolation=cv2.INTER_CUBIC)
    fill = int(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    base = np.full((CANVAS, CANVAS), fill, np.uint8)
    off = (CANVAS - FACE) // 2
    base[off : off + FACE, off : off + FACE] = face
    rng = np.random.default_rng(_seed(key))
    frames: list[np.ndarray] = []
    for v in range(views):
        img = base
        if v > 0:
            scale = rng.uniform(0.9, 1.1)
            angle = rng.uniform(-10.0, 10.0)
            shift = rng.uniform(-0.06, 0.06, size=2) * FACE
            m = cv2.getRotationMatrix2D((CANVAS / 2, CANVAS / 2), angle, scale)
            m[:, 2] += shift
            img = cv2.warpAffine(base, m, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR, borderValue=fill)
            if rng.random() < 0.5:
                img = img[:, ::-1]
            gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20.0, 20.0)
            img = np.clip(img.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
        frames.append(np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2)))
    return frames
