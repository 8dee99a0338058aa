"""Face stage: per video frame, the extractor's face detection + crop + expression model, plus the frame
measurements that modality health needs (luma for darkness, difference to the previous frame for
freezes, keypoint loss for occlusion)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.frames import VideoFrame

# Face-model class names -> engine class, for each model's own names: FER2013 (mini-Xception: angry,
# happy, ...) and FER+ (DenseFace: anger, happiness, ...). Disgust, fear, surprise and contempt have no
# counterpart among ang/hap/neu/sad; the expert reading renormalises over the classes that do.
FACE_TO_ENGINE = {
    "angry": "ang",
    "anger": "ang",
    "happy": "hap",
    "happiness": "hap",
    "neutral": "neu",
    "sad": "sad",
    "sadness": "sad",
}


@dataclass
class FaceRecord:
    t: float  # media time of the frame (s)
    arrival: float  # monotonic arrival time of the frame
    feature: np.ndarray  # [D] float32; zeros when no face
    present: bool  # a face was found
    box: tuple[float, float, float, float] | None  # x0, y0, x1, y1 (pixels)
    score: float  # detection score (0 when no face)
    landmark_loss: float  # fraction of the detector's keypoints missing or outside the box (0..1)
    luma: float  # mean luma 0..255
    motion: float  # mean |gray - previous gray| on a 64x64 thumbnail (0..255); inf for the first frame
    probs: np.ndarray | None  # [7] FER2013 expression probabilities when the embedder has a head
    ms: float  # processing time of this frame (ms)
    error: str = ""  # why the frame could not be analysed (the face stage raised), or ""


def _thumb(rgb: np.ndarray) -> np.ndarray:
    """64x64 gray thumbnail (float32) by block averaging: cheap and noise-robust for freeze detection."""
    gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # [H, W]
    h, w = gray.shape
    ys = np.linspace(0, h, 65).astype(int)
    xs = np.linspace(0, w, 65).astype(int)
    return np.add.reduceat(np.add.reduceat(gray, ys[:-1], axis=0), xs[:-1], axis=1) / (
        np.diff(ys)[:, None] * np.diff(xs)[None, :]
    )


def _landmark_loss(box: Any, expected: int = 6) -> float:
    kps = list(getattr(box, "keypoints", ()) or ())
    if not kps:
        return 1.0 if expected else 0.0
    mx, my = 0.1 * box.width, 0.1 * box.height
    inside = sum(1 for x, y in kps if box.x0 - mx <= x <= box.x1 + mx and box.y0 - my <= y <= box.y1 + my)
    return 1.0 - inside / max(expected, len(kps))


class FaceStage:
    """``extractor`` is a ``models.encoders.face.FaceFeatureExtractor`` (or None: measurements only)."""

    def __init__(self, extractor: Any | None, feature_dim: int) -> None:
        self.extractor = extractor
        self.dim = feature_dim
        self._prev: np.ndarray | None = None

    def reset(self) -> None:
        self._prev = None
        if self.extractor is not None and hasattr(self.extractor, "reset"):
            self.extractor.reset()

    def analyse(self, frame: VideoFrame) -> FaceRecord:
        """Blocking: detection and embedding of one frame."""
        return self.analyse_batch([frame])[0]

    def analyse_batch(self, frames: list[VideoFrame]) -> list[FaceRecord]:
        """Blocking: frames in time order; detection per frame, one embedding pass for all face crops
        (what fast replay gets when frames queue up; live capture usually brings one at a time)."""
        t0 = time.perf_counter()
        n = len(frames)
        result = self.extractor.extract([f.image for f in frames]) if self.extractor is not None else None
        records: list[FaceRecord] = []
        for i, frame in enumerate(frames):
            thumb = _thumb(frame.image)
            luma = float(thumb.mean())
            motion = float(np.abs(thumb - self._prev).mean()) if self._prev is not None else float("inf")
            self._prev = thumb
            feature = np.zeros(self.dim, np.float32)
            present, box, score, loss, probs = False, None, 0.0, 1.0, None
            b = result.boxes[i] if result is not None else None
            if result is not None and bool(result.present[i]) and b is not None:
                present = True
                feature = np.asarray(result.features[i], np.float32)
                box = (float(b.x0), float(b.y0), float(b.x1), float(b.y1))
                score = float(b.score)
                loss = _landmark_loss(b)
                if result.probs is not None:
                    probs = np.asarray(result.probs[i], np.float32)
            records.append(FaceRecord(t=frame.t, arrival=frame.arrival, feature=feature, present=present,
                                      box=box, score=score, landmark_loss=loss, luma=luma, motion=motion,
                                      probs=probs, ms=0.0))
        ms = (time.perf_counter() - t0) * 1e3 / max(n, 1)  # per frame
        for r in records:
            r.ms = ms
        return records

    async def process(self, frame: VideoFrame) -> FaceRecord:
        return await asyncio.to_thread(self.analyse, frame)

    async def process_batch(self, frames: list[VideoFrame]) -> list[FaceRecord]:
        return await asyncio.to_thread(self.analyse_batch, frames)


def expert_reading(
    records: list[FaceRecord], class_names: tuple[str, ...], face_names: tuple[str, ...]
) -> tuple[dict[str, float], int] | None:
    """Mean face-model probabilities over the window's face frames, mapped to the engine's classes by
    the model's own class names (``face_names``, in the order of its output)."""
    probs = [r.probs for r in records if r.present and r.probs is not None]
    if not probs:
        return None
    mean = np.mean(np.stack(probs), axis=0)
    vals = np.zeros(len(class_names))
    for i, name in enumerate(face_names):
        c = FACE_TO_ENGINE.get(name.lower())
        if c in class_names:
            vals[class_names.index(c)] += mean[i]
    total = float(vals.sum())
    if total <= 0:
        return None
    return {c: float(v / total) for c, v in zip(class_names, vals, strict=True)}, len(probs)
