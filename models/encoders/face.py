"""Face detection (MediaPipe Tasks BlazeFace short-range), face selection, cropping, and the per-frame
face feature pipeline: detect -> select one face -> square crop with margin -> gray -> resize -> embed.

The detector model is ``models/assets/face_detection_short_range.tflite``, copied from the
mediapipe 0.10.21 wheel (Apache-2.0) and loaded by the current mediapipe Tasks API.

OpenCV: mediapipe depends on ``opencv-contrib-python``; ``opencv-python`` and
``opencv-python-headless`` install into the same ``cv2/`` folder, and the last one installed wins. This
module only needs ``cv2.cvtColor`` and ``cv2.resize``, which every variant has, so the project takes the
``opencv-contrib-python`` that mediapipe pulls and never lists another OpenCV wheel.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

DETECTOR_FILE = "face_detection_short_range.tflite"
SELECTIONS = ("largest", "track")


def default_detector_path() -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / DETECTOR_FILE


@dataclass(frozen=True)
class FaceBox:
    x0: float  # pixels, left
    y0: float  # pixels, top
    x1: float  # pixels, right (exclusive)
    y1: float  # pixels, bottom (exclusive)
    score: float
    keypoints: tuple[tuple[float, float], ...] = ()  # pixels: eyes, nose tip, mouth, ear tragions

    @property
    def width(self) -> float:
        return max(0.0, self.x1 - self.x0)

    @property
    def height(self) -> float:
        return max(0.0, self.y1 - self.y0)

    @property
    def area(self) -> float:
        return self.width * self.height

    def iou(self, other: FaceBox) -> float:
        ix = max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


@dataclass
class FaceDetectorConfig:
    model_path: str | None = None  # None: the bundled BlazeFace short-range tflite
    min_confidence: float = 0.5
    min_suppression: float = 0.3  # non-maximum suppression IoU threshold
    selection: str = "largest"  # "largest" | "track" (follow one face across frames by IoU)
    track_iou: float = 0.3  # track: the previous face is "the same" above this IoU

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"face.detector.min_confidence must be in [0, 1], got {self.min_confidence}")
        if not 0.0 <= self.min_suppression <= 1.0:
            raise ValueError(f"face.detector.min_suppression must be in [0, 1], got {self.min_suppression}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"face.detector.selection must be one of {SELECTIONS}, got {self.selection!r}")
        if not 0.0 < self.track_iou <= 1.0:
            raise ValueError(f"face.detector.track_iou must be in (0, 1], got {self.track_iou}")

    def resolved_path(self) -> Path:
        return Path(self.model_path) if self.model_path else default_detector_path()


class FaceDetector:
    """BlazeFace short-range through mediapipe Tasks (IMAGE mode: frames are independent)."""

    def __init__(self, cfg: FaceDetectorConfig | None = None) -> None:
        self.cfg = cfg or FaceDetectorConfig()
        path = self.cfg.resolved_path()
        if not path.is_file():
            raise FileNotFoundError(
                f"face detector model not found at {path}. The bundled file lives in models/assets/; "
                f"it can be re-extracted from the mediapipe 0.10.21 wheel "
                f"(`pip download --no-deps mediapipe==0.10.21`, then unzip "
                f"mediapipe/modules/face_detection/{DETECTOR_FILE})."
            )
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_buffer=path.read_bytes()),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=self.cfg.min_confidence,
            min_suppression_threshold=self.cfg.min_suppression,
        )
        self._detector = vision.FaceDetector.create_from_options(options)
        self._lock = threading.Lock()  # one detector may serve many streams' threads
        # Close the native task when this wrapper is collected. Not at interpreter exit: by then
        # mediapipe's dispatcher threads are gone; call close() (or use `with`) to shut down quietly.
        self._finalizer = weakref.finalize(self, self._detector.close)
        self._finalizer.atexit = False

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        """rgb: uint8 [H, W, 3]. Returns every face found, highest score first."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"detect needs uint8 [H, W, 3] RGB, got {rgb.dtype} {rgb.shape}")
        h, w = rgb.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        with self._lock:
            result = self._detector.detect(image)
        boxes: list[FaceBox] = []
        for d in result.detections:
            bb = d.bounding_box
            x0, y0 = float(bb.origin_x), float(bb.origin_y)
            kps = tuple((float(k.x) * w, float(k.y) * h) for k in (d.keypoints or []))
            score = float(d.categories[0].score) if d.categories else 0.0
            boxes.append(FaceBox(x0, y0, x0 + float(bb.width), y0 + float(bb.height), score, kps))
        boxes.sort(key=lambda b: -b.score)
        return boxes

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FaceSelector:
    """Pick one face per frame. "largest": the biggest box. "track": the box that overlaps the face
    chosen in the previous frame most (IoU >= track_iou), else the largest (a new identity)."""

    def __init__(self, policy: str = "largest", track_iou: float = 0.3) -> None:
        if policy not in SELECTIONS:
            raise ValueError(f"selection policy must be one of {SELECTIONS}, got {policy!r}")
        self.policy = policy
        self.track_iou = track_iou
        self._last: FaceBox | None = None

    def reset(self) -> None:
        self._last = None

    def __call__(self, boxes: Sequence[FaceBox]) -> FaceBox | None:
        if not boxes:
            return None  # keep the tracked identity: a missed frame does not end the track
        chosen = max(boxes, key=lambda b: b.area)
        if self.policy == "track" and self._last is not None:
            best = max(boxes, key=lambda b: b.iou(self._last))  # type: ignore[arg-type]
            if best.iou(self._last) >= self.track_iou:
                chosen = best
        self._last = chosen
        return chosen


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> uint8 gray [H, W] (ITU-R BT.601 luma, as OpenCV and Keras tools use)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def crop_face(rgb: np.ndarray, box: FaceBox, margin: float = 0.1, size: int = 64) -> np.ndarray:
    """Square gray crop around ``box``: side = max(w, h) * (1 + 2 * margin), centred on the box,
    zero-padded where it leaves the frame, resized to [size, size] uint8."""
    import cv2

    gray = rgb if rgb.ndim == 2 else to_gray(rgb)
    h, w = gray.shape
    cx, cy = (box.x0 + box.x1) / 2.0, (box.y0 + box.y1) / 2.0
    side = max(box.width, box.height) * (1.0 + 2.0 * margin)
    side = max(side, 2.0)
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = int(round(side))
    out = np.zeros((s, s), np.uint8)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + s), min(h, y0 + s)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = gray[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.resize(out, (size, size), interpolation=interp)


class FaceEmbedder(Protocol):
    """A face expression model: gray uint8 [N, S, S] -> object with .features [N, D] (and .probs, in
    ``class_names`` order); ``model_name`` labels its own reading in engine events."""

    model_name: str
    class_names: tuple[str, ...]
    input_size: int
    feature_dim: int

    def __call__(self, gray: np.ndarray) -> Any: ...


@dataclass
class FaceFrameResult:
    features: np.ndarray  # float32 [N, D]; zero rows where no face was found
    present: np.ndarray  # bool [N]
    boxes: list[FaceBox | None] = field(default_factory=list)
    probs: np.ndarray | None = None  # [N, C] class probabilities when the model has a head; 0 rows if absent


class FaceFeatureExtractor:
    """Per-frame face features with a face-present flag. Models are loaded once by the caller.

    ``extract(frames)`` batches the crops of many frames into one forward pass (what the engine's
    window and offline extraction use); ``__call__(rgb)`` is the single-frame convenience.
    """

    def __init__(
        self,
        detector: FaceDetector,
        embedder: FaceEmbedder,
        margin: float = 0.1,
        selection: str | None = None,
        logprobs: bool = False,
    ) -> None:
        if margin < 0:
            raise ValueError(f"face crop margin must be >= 0, got {margin}")
        self.detector = detector
        self.embedder = embedder
        self.margin = margin
        # Append log(probs) of the embedder's own classifier to each embedding ([D + C] per frame).
        self.logprobs = logprobs
        policy = selection or detector.cfg.selection
        self.selector = FaceSelector(policy, detector.cfg.track_iou)

    @property
    def dim(self) -> int:
        extra = len(self.embedder.class_names) if self.logprobs else 0
        return int(self.embedder.feature_dim) + extra

    def reset(self) -> None:
        """Forget the tracked face (call between independent videos)."""
        self.selector.reset()

    def for_stream(self) -> FaceFeatureExtractor:
        """The same detector and models with a face tracker of its own: one per concurrent stream."""
        other = copy.copy(self)
        other.selector = FaceSelector(self.selector.policy, self.selector.track_iou)
        return other

    def extract(self, frames: Sequence[np.ndarray]) -> FaceFrameResult:
        n = len(frames)
        boxes: list[FaceBox | None] = []
        crops: list[np.ndarray] = []
        for rgb in frames:
            box = self.selector(self.detector.detect(rgb))
            boxes.append(box)
            if box is not None:
                crops.append(crop_face(rgb, box, self.margin, self.embedder.input_size))
        present = np.array([b is not None for b in boxes], bool)
        feats = np.zeros((n, self.dim), np.float32)
        probs: np.ndarray | None = None
        if crops:
            out = self.embed(np.stack(crops))
            feats[present] = out.features
            probs = np.zeros((n, out.probs.shape[1]), np.float32)
            probs[present] = out.probs
        return FaceFrameResult(feats, present, boxes, probs)

    def embed(self, crops: np.ndarray) -> Any:
        """gray uint8 [N, S, S] face crops -> object with .features [N, dim] and .probs [N, C]."""
        out = self.embedder(crops)
        if self.logprobs:
            logp = np.log(np.clip(out.probs, 1e-6, 1.0)).astype(np.float32)
            out = type(out)(np.concatenate([out.features, logp], axis=1).astype(np.float32), out.probs)
        return out

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, bool, FaceBox | None]:
        r = self.extract([rgb])
        return r.features[0], bool(r.present[0]), r.boxes[0]
