"""Typed, timestamped frames that flow from sources to stages, and the EmotionEvent that leaves the engine.

Every frame carries ``t``: media time in seconds since the stream's start (monotonic, never wall
clock), and ``arrival``: ``time.monotonic()`` when the frame entered the engine (used for end-to-end
latency). A frame type is defined once, here.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

STATES = ("present", "reconstructed", "missing")


@dataclass
class AudioFrame:
    """A chunk of mono PCM. ``pcm`` is [N] float32 in [-1, 1] at ``sample_rate`` Hz; ``t`` is the media
    time of its first sample (s)."""

    pcm: np.ndarray
    sample_rate: int
    t: float
    source: str = ""
    arrival: float = field(default_factory=time.monotonic)

    @property
    def duration(self) -> float:
        return len(self.pcm) / float(self.sample_rate)


@dataclass
class VideoFrame:
    """One RGB image [H, W, 3] uint8 captured at media time ``t`` (s)."""

    image: np.ndarray
    t: float
    source: str = ""
    arrival: float = field(default_factory=time.monotonic)


@dataclass
class SourceStatusFrame:
    """A source reports that a modality stopped (``ok`` False: device lost, read error, end of a track)
    or came back. Errors travel as data: the stream does not die."""

    modality: str  # "audio" | "video"
    ok: bool
    reason: str
    t: float
    source: str = ""
    arrival: float = field(default_factory=time.monotonic)


@dataclass
class EndFrame:
    """The source has no more media (end of file, engine closing)."""

    source: str = ""
    t: float = 0.0
    arrival: float = field(default_factory=time.monotonic)


Frame = AudioFrame | VideoFrame | SourceStatusFrame | EndFrame


@dataclass
class Word:
    """A transcribed word with media timestamps (s). ``committed`` False marks a tentative word that the
    streaming policy has not confirmed yet."""

    text: str
    start: float
    end: float
    probability: float = 1.0
    committed: bool = True


@dataclass
class ModalityHealth:
    """Per window and modality: ``state`` is "present" (used as is), "reconstructed" (unusable, rebuilt by
    CM-ARR from the others before fusion) or "missing" (unusable and nothing to rebuild it from).
    ``reason`` says why it is not present ("" when present); ``stats`` holds the measurements behind
    the decision (coverage, dBFS, speech ratio, face ratio, luma, ...)."""

    state: str
    reason: str = ""
    stats: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"modality state must be one of {STATES}, got {self.state!r}")

    @property
    def usable(self) -> bool:
        return self.state == "present"


@dataclass
class FaceInfo:
    """The face used in the window: box (x0, y0, x1, y1) in pixels of the last frame with a face, and the
    median detection score over the window's face frames."""

    box: tuple[float, float, float, float] | None
    score: float


@dataclass
class ExpertReading:
    """A pretrained single-modality model's own reading mapped to the engine's classes."""

    model: str
    probs: dict[str, float]
    label: str
    frames: int = 0


def _clean(v: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


@dataclass
class EmotionEvent:
    """One per window. ``seq`` is gapless per engine run (0, 1, 2, ...), so a consumer can prove that no
    event was lost. Media times ``t_start``/``t_end`` are seconds of stream time; ``wall_time`` is Unix
    time at emission. ``probs`` is None only when no modality was usable (nothing to fuse)."""

    seq: int
    stream: str
    t_start: float
    t_end: float
    wall_time: float
    probs: dict[str, float] | None
    label: str | None
    condition: str  # available set, e.g. "tav", "v", or "" when nothing was usable
    modalities: dict[str, ModalityHealth]
    transcript: str
    tentative: str = ""
    words: list[Word] = field(default_factory=list)
    new_words: list[Word] = field(default_factory=list)  # committed by this window: each word in one event
    asr: dict[str, str] = field(default_factory=dict)  # the window's recognition pass: state, reason
    face: FaceInfo | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    e2e_latency_ms: float = 0.0
    model: str = "untrained"
    trained: bool = False
    raw_probs: dict[str, float] | None = None  # before EMA smoothing (equal to probs when smoothing is off)
    experts: dict[str, ExpertReading] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # audio samples / video frames dropped so far
    errors: list[str] = field(default_factory=list)
    final: bool = False  # the last window of the stream

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmotionEvent:
        d = dict(d)
        d["modalities"] = {k: ModalityHealth(**v) for k, v in d["modalities"].items()}
        d["words"] = [Word(**w) for w in d.get("words", [])]
        d["new_words"] = [Word(**w) for w in d.get("new_words", [])]
        d["face"] = FaceInfo(**d["face"]) if d.get("face") else None
        d["experts"] = {k: ExpertReading(**v) for k, v in d.get("experts", {}).items()}
        return cls(**d)
