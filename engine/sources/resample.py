"""Streaming downmix + resampling to the engine's 16 kHz mono, chunk by chunk without edge artefacts.

Uses the same operations as ``models.encoders.audio`` (plain channel mean, soxr HQ), but keeps the
resampler's state between chunks so that a chunked stream equals the one-shot conversion.
"""

from __future__ import annotations

import numpy as np

from models.encoders.audio import TARGET_SR, to_mono


class StreamResampler:
    def __init__(self, sr_in: int, sr_out: int = TARGET_SR) -> None:
        if sr_in <= 0:
            raise ValueError(f"input sample rate must be positive, got {sr_in}")
        self.sr_in, self.sr_out = int(sr_in), int(sr_out)
        self._stream = None
        if self.sr_in != self.sr_out:
            import soxr

            self._stream = soxr.ResampleStream(self.sr_in, self.sr_out, 1, dtype="float32", quality="HQ")

        self.samples_in = 0
        self.samples_out = 0

    @property
    def held_s(self) -> float:
        """Seconds of input the filter still holds back (its delay): output lags input by this much."""
        return self.samples_in / self.sr_in - self.samples_out / self.sr_out

    def __call__(self, pcm: np.ndarray, channels_axis: int | None = None, last: bool = False) -> np.ndarray:
        """pcm: [n] or 2-D with channels on ``channels_axis`` -> [m] float32 mono at sr_out."""
        mono = to_mono(pcm, channels_axis) if np.asarray(pcm).ndim > 1 else to_mono(pcm)
        self.samples_in += len(mono)
        if self._stream is None:
            out = np.ascontiguousarray(mono, dtype=np.float32)
        else:
            out = np.asarray(
                self._stream.resample_chunk(np.ascontiguousarray(mono), last=last), dtype=np.float32
            )
        self.samples_out += len(out)
        return out
