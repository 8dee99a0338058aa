"""Video frame reading with PyAV (no OpenCV VideoCapture: the same decoder as the audio path)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class NoVideoStreamError(ValueError):
    """The media file has no video track (for example an audio-only recording)."""


@dataclass(frozen=True)
class VideoFrame:
    time: float  # seconds from the start of the file (or of the requested span)
    rgb: np.ndarray  # uint8 [H, W, 3]


def has_video(path: str | Path) -> bool:
    import av

    with av.open(str(path)) as c:
        return len(c.streams.video) > 0


def iter_frames(
    path: str | Path,
    max_fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
) -> Iterator[VideoFrame]:
    """Yield RGB frames of ``path`` in order.

    max_fps: drop frames so that at most this many per second are yielded (None: every frame). The
    paper samples faces at 30 fps; CREMA-D is 29.97 fps, so 30 keeps every frame there.
    start/end (seconds) restrict to a span; yielded times are relative to ``start``.
    """
    import av

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"video file not found: {p}")
    if max_fps is not None and max_fps <= 0:
        raise ValueError(f"max_fps must be positive, got {max_fps}")
    t0 = start or 0.0
    last_slot = -1
    first: float | None = None
    with av.open(str(p)) as container:
        if not container.streams.video:
            raise NoVideoStreamError(f"{p} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if start:
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
        for i, frame in enumerate(container.decode(stream)):
            t = float(frame.time) if frame.time is not None else i / float(stream.average_rate or 30)
            if t < t0 - 1e-6:
                continue
            if end is not None and t >= end:
                break
            rel = t - t0
            if max_fps is not None:
                # One frame per slot of a 1/max_fps grid anchored at the first frame; the half-slot
                # offset absorbs millisecond timestamp jitter, so 29.97 fps material keeps every
                # frame at max_fps=30.
                first = rel if first is None else first
                slot = int(np.floor((rel - first) * max_fps + 0.5))
                if slot <= last_slot:
                    continue
                last_slot = slot
            yield VideoFrame(rel, frame.to_ndarray(format="rgb24"))
