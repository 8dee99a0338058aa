"""Shared helpers for extractor tests: the bundled CREMA-D clips, derived clips, cached extractor bundles."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CREMAD = REPO / "data" / "cremad"
LABELS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


def clip(label: str) -> Path:
    return CREMAD / f"1001_DFA_{label}_XX.flv"


def wav(label: str) -> Path:
    return CREMAD / "wav16k" / f"1001_DFA_{label}_XX.wav"


def read_frames(path: Path) -> tuple[list[np.ndarray], float]:
    """Every RGB frame of a clip and its frame rate."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        rate = float(s.average_rate)
        return [f.to_ndarray(format="rgb24") for f in c.decode(s)], rate


def write_clip(
    out: Path,
    frames: list[np.ndarray] | None,
    fps: float = 30.0,
    audio: np.ndarray | None = None,
    sr: int = 16000,
) -> Path:
    """Write an .mkv with mpeg4 video (if frames) and FLAC mono audio (if audio)."""
    from fractions import Fraction

    import av

    with av.open(str(out), "w") as c:
        vs = None
        if frames:
            vs = c.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1001))
            vs.height, vs.width = frames[0].shape[:2]
            vs.pix_fmt = "yuv420p"
            vs.bit_rate = 2_000_000
        as_ = c.add_stream("flac", rate=sr, layout="mono") if audio is not None else None
        if vs is not None:
            for f in frames or []:
                for pkt in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(pkt)
            for pkt in vs.encode():
                c.mux(pkt)
        if as_ is not None and audio is not None:
            pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
            for i in range(0, len(pcm), 4096):
                fr = av.AudioFrame.from_ndarray(pcm[None, i : i + 4096], format="s16", layout="mono")
                fr.sample_rate = sr
                fr.pts = i  # in samples (time base 1/sr)
                fr.time_base = Fraction(1, sr)
                for pkt in as_.encode(fr):
                    c.mux(pkt)
            for pkt in as_.encode():
                c.mux(pkt)
    return out


@functools.cache
def offline_extractors(*overrides: str):  # noqa: ANN201 - models.encoders.profile.Extractors
    """One offline bundle per set of profile overrides per test session (model loads cost seconds)."""
    from models.encoders.profile import build_extractors, load_profile

    return build_extractors(load_profile("offline", list(overrides)))
