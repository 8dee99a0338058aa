"""A looping video-file capture that stands in for ``cv2.VideoCapture`` (no camera needed).

Frames come from a real file decoded with PyAV, returned as BGR like OpenCV does. ``fail_after``
makes ``read`` start failing (a camera unplugged mid-stream); ``opens=False`` simulates a camera index
that does not exist.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def decode_rgb(path: str | Path, limit: int | None = None) -> list[np.ndarray]:
    import av

    out: list[np.ndarray] = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="rgb24"))
            if limit and len(out) >= limit:
                break
    return out


class LoopingVideoCapture:
    instances: list[LoopingVideoCapture] = []

    def __init__(
        self,
        frames_rgb: list[np.ndarray],
        opens: bool = True,
        fail_after: int | None = None,
        fps: float = 30.0,
    ) -> None:
        self.frames = [f[..., ::-1].copy() for f in frames_rgb]  # OpenCV delivers BGR
        self.opens = opens
        self.fail_after = fail_after
        self.fps = fps
        self.reads = 0
        self.released = False
        self.props: dict[int, float] = {}
        LoopingVideoCapture.instances.append(self)

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opens and not self.released

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.isOpened():
            return False, None
        if self.fail_after is not None and self.reads >= self.fail_after:
            time.sleep(0.001)
            return False, None
        time.sleep(1.0 / self.fps)  # a camera blocks until the next frame
        frame = self.frames[self.reads % len(self.frames)]
        self.reads += 1
        return True, frame

    def release(self) -> None:
        self.released = True


def install(monkeypatch, factory) -> None:  # noqa: ANN001 - pytest's MonkeyPatch and a callable
    """Make ``cv2.VideoCapture(index)`` return ``factory(index)``."""
    import cv2

    monkeypatch.setattr(cv2, "VideoCapture", factory)
