"""A backend that records the windows it fuses: real fusion inputs for int8 calibration.

``RecordingBackend`` wraps any backend and is itself one. Each row of each batch is kept as a sample
(its valid rows per modality and its availability), up to ``limit`` samples, and the wrapped backend's
result is returned unchanged. ``engine/tools/int8_windows.py`` replays clips through it and writes the samples
with ``engine.backends.graphs.save_calibration``.
"""

from __future__ import annotations

import threading

import numpy as np

from engine.backends.base import FusionBackend, FusionInputs, FusionResult
from models.modalities import MODALITIES


def unpad(inputs: FusionInputs) -> list[dict[str, np.ndarray]]:
    """The rows of a padded batch as samples: modality -> [L_valid, D] float32, "avail" -> [3]."""
    out = []
    for i in range(inputs.batch):
        sample = {"avail": np.asarray(inputs.avail[i], np.float32).copy()}
        for m in MODALITIES:
            x, mask = getattr(inputs, m)[i], getattr(inputs, f"{m}_mask")[i].astype(bool)
            sample[m] = np.asarray(x[mask], np.float32).copy()
        out.append(sample)
    return out


class RecordingBackend(FusionBackend):
    name = "recording"

    def __init__(self, inner: FusionBackend, limit: int = 100_000) -> None:
        super().__init__(inner.model_id)
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.inner = inner
        self.limit = limit
        self.samples: list[dict[str, np.ndarray]] = []
        self._lock = threading.Lock()

    def infer(self, inputs: FusionInputs) -> FusionResult:
        res = self.inner.infer(inputs)
        with self._lock:
            room = self.limit - len(self.samples)
            if room > 0:
                self.samples.extend(unpad(inputs)[:room])
        return res

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> dict[str, str]:
        return {**self.inner.describe(), "recording": str(len(self.samples))}
