"""Audio decoding, downmixing and resampling shared by extraction and the live engine.

Every speech extractor takes 16 kHz mono float32 in [-1, 1]. ``load_audio`` gets there from any file
PyAV can open (wav, flac, mp3, the audio track of flv/mp4/avi, ...): decode to float planar, average
the channels (a plain mean keeps a centred source at its level and never clips), then resample with
soxr's high-quality filter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TARGET_SR = 16000


class NoAudioStreamError(ValueError):
    """The media file has no audio track (for example a video whose audio was stripped)."""


def to_mono(pcm: np.ndarray, channels_axis: int | None = None) -> np.ndarray:
    """Average channels to mono float32 [n].

    pcm: [n] (already mono) or 2-D with channels on ``channels_axis``. When ``channels_axis`` is None a
    2-D array is taken as [n, C] if its last axis is the shorter one, else [C, n]. Integer PCM is scaled
    to [-1, 1] by its dtype's full range.
    """
    x = np.asarray(pcm)
    if np.issubdtype(x.dtype, np.integer):
        info = np.iinfo(x.dtype)
        x = x.astype(np.float32) / float(max(abs(info.min), info.max))
    else:
        x = x.astype(np.float32, copy=False)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"pcm must be 1-D or 2-D, got shape {x.shape}")
    if channels_axis is None:
        channels_axis = 1 if x.shape[1] <= x.shape[0] else 0
    return x.mean(axis=channels_axis, dtype=np.float32)


def resample(pcm: np.ndarray, sr_in: int, sr_out: int = TARGET_SR) -> np.ndarray:
    """Band-limited resampling of [n] or [n, C] float audio with soxr (HQ). Returns float32."""
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    x = np.asarray(pcm, dtype=np.float32)
    if sr_in == sr_out or x.shape[0] == 0:
        return x.copy()
    import soxr

    return np.asarray(soxr.resample(x, sr_in, sr_out, quality="HQ"), dtype=np.float32)


def has_audio(path: str | Path) -> bool:
    import av

    with av.open(str(path)) as c:
        return len(c.streams.audio) > 0


def load_audio(
    path: str | Path,
    sr: int = TARGET_SR,
    start: float | None = None,
    end: float | None = None,
) -> np.ndarray:
    """Decode ``path`` to mono float32 [n] at ``sr`` Hz.

    start/end (seconds) cut a span, e.g. one utterance out of a whole recorded dialogue. Raises
    FileNotFoundError for a missing file and NoAudioStreamError when the file has no audio track.
    """
    import av

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"audio/video file not found: {p}")
    chunks: list[np.ndarray] = []
    with av.open(str(p)) as container:
        if not container.streams.audio:
            raise NoAudioStreamError(f"{p} has no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate)
        # Convert every decoded frame to float planar [C, n] at the native rate and layout; mixing and
        # resampling happen below with known-correct numpy/soxr code.
        converter = av.AudioResampler(format="fltp", layout=stream.codec_context.layout, rate=rate)
        for frame in container.decode(stream):
            for out in converter.resample(frame):
                chunks.append(out.to_ndarray())
        for out in converter.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks:
        return np.zeros(0, np.float32)
    planar = np.concatenate(chunks, axis=1)  # [C, n]
    mono = to_mono(planar, channels_axis=0)
    if start is not None or end is not None:
        a = max(0, int(round((start or 0.0) * rate)))
        b = len(mono) if end is None else min(len(mono), int(round(end * rate)))
        mono = mono[a:b]
    return resample(mono, rate, sr)
