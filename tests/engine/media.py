"""Real test media derived from the bundled CREMA-D clips (written with PyAV into a temp folder)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CREMAD = ROOT / "data" / "cremad"
ANG = CREMAD / "1001_DFA_ANG_XX.flv"
ANG_WAV = CREMAD / "wav16k" / "1001_DFA_ANG_XX.wav"


def decode_video(path: Path) -> list[tuple[float, np.ndarray]]:
    import av

    with av.open(str(path)) as c:
        return [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def write_media(
    path: Path,
    frames: list[tuple[float, np.ndarray]] | None,
    audio: np.ndarray | None = None,
    sr: int = 16000,
) -> Path:
    """Write frames (t seconds, RGB) as mpeg4 and audio ([n] or [n, C] float) as PCM into ``path`` (.mkv)."""
    import av

    with av.open(str(path), "w") as out:
        vs = as_ = None
        if frames:
            h, w = frames[0][1].shape[:2]
            vs = out.add_stream("mpeg4", rate=30)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.time_base = Fraction(1, 1000)
            vs.codec_context.qscale = 2
            vs.codec_context.flags |= 0x2  # qscale: keep black frames black
        if audio is not None:
            a = audio if audio.ndim == 2 else audio[:, None]
            as_ = out.add_stream("pcm_s16le", rate=sr, layout="mono" if a.shape[1] == 1 else "stereo")
        if vs is not None:
            for t, rgb in frames:
                vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                vf.pts = int(round(t * 1000))
                vf.time_base = Fraction(1, 1000)
                for p in vs.encode(vf):
                    out.mux(p)
            for p in vs.encode():
                out.mux(p)
        if as_ is not None:
            pcm16 = (np.clip(a, -1, 1) * 32767).astype(np.int16)
            step = 1024
            for i in range(0, len(pcm16), step):
                chunk = np.ascontiguousarray(pcm16[i : i + step].T.reshape(1, -1))  # packed s16: [1, n*C]
                af = av.AudioFrame.from_ndarray(chunk, format="s16", layout=as_.layout.name)
                af.sample_rate = sr
                af.pts = i
                af.time_base = Fraction(1, sr)
                for p in as_.encode(af):
                    out.mux(p)
            for p in as_.encode():
                out.mux(p)
    return path
