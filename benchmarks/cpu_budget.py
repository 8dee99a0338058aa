"""Where a live stream's CPU goes, per second of media, and what each engine choice costs.

    python -m benchmarks.cpu_budget [--json OUT] [--repeats 8]

Measured on real media (the monologue fixture and a bundled CREMA-D clip), models loaded once:

- ``encoder``: one Whisper encoder pass over a 4 s window (padded to 30 s), at 1, 2 and 4 CTranslate2
  threads; ``decoder``: the window's recognition pass (prompt, forced prefix, alignment) on that
  encoder output, at the same thread counts. The engine runs one of each per window (hop 1 s).
- ``shared_vs_separate``: a window's speech features plus recognition with one shared encoder pass
  (the engine's way) against features and recognition each encoding the window; ratio.
- ``face``: per video frame, detection alone and the whole face path (detect, crop, embed), and the
  CPU each analysis rate costs per second of video (5, 10, 15, 30 fps).
- ``text``, ``vad``: MiniLM on a window's words; silero over one second of audio.

Timings are medians over ``--repeats`` runs. Ratios are what to compare across machines.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.report import emit

ROOT = Path(__file__).resolve().parents[1]
MONOLOGUE = ROOT / "tests" / "data" / "streams" / "monologue_en_us.flac"
CLIP = ROOT / "data" / "cremad" / "1001_DFA_ANG_XX.flv"


class Cycle:
    """0, 1, ..., n-1, 0, 1, ...: which input the next call takes."""

    def __init__(self, n: int) -> None:
        self.n, self.i = n, -1

    def __call__(self) -> int:
        self.i = (self.i + 1) % self.n
        return self.i


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return round(float(np.median(out)), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--repeats", type=int, default=8)
    args = ap.parse_args()
    os.environ.setdefault("GLOG_minloglevel", "2")
    import av
    import soundfile as sf

    from engine.stages.vad import SileroVAD
    from models.encoders.asr import ASRConfig, WhisperASR
    from models.encoders.profile import build_extractors, load_profile
    from models.encoders.whisper_states import WhisperStatesConfig, WhisperStatesExtractor

    x, sr = sf.read(str(MONOLOGUE), dtype="float32")
    windows = [x[(10 + 5 * k) * sr : (14 + 5 * k) * sr] for k in range(args.repeats)]
    prompt = "Thank you for calling the support line. My name is Alex and I will be helping you today."
    r = args.repeats
    report: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "encoder_ms": {},
        "decoder_ms": {},
    }
    for th in (1, 2, 4):
        sp = WhisperStatesExtractor(WhisperStatesConfig(cpu_threads=th))
        asr = WhisperASR(ASRConfig(cpu_threads=th))
        encs = [sp.encode_window(w)[1] for w in windows]
        turn = Cycle(r)
        report["encoder_ms"][th] = median_ms(lambda sp=sp, turn=turn: sp.encode_window(windows[turn()]), r)

        def dec(asr: WhisperASR = asr, encs: list = encs, turn: Cycle = turn) -> None:
            i = turn()
            asr.decode(encs[i], len(windows[i]), prompt=prompt, prefix="and I know")

        report["decoder_ms"][th] = median_ms(dec, r)
        if th == 2:

            def shared(sp: WhisperStatesExtractor = sp, asr: WhisperASR = asr, turn: Cycle = turn) -> None:
                w = windows[turn()]
                _, enc = sp.encode_window(w)
                asr.decode(enc, len(w), prompt=prompt)

            def separate(sp: WhisperStatesExtractor = sp, asr: WhisperASR = asr, turn: Cycle = turn) -> None:
                w = windows[turn()]
                sp(w)
                asr.decode(asr.encode(w), len(w), prompt=prompt)

            a, b = median_ms(shared, r), median_ms(separate, r)
            report["shared_vs_separate"] = {"shared_ms": a, "separate_ms": b, "ratio": round(b / a, 2)}
    ex = build_extractors(load_profile("offline"))
    with av.open(str(CLIP)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][:30]
    face = ex.face
    fi = Cycle(len(frames))
    det = median_ms(lambda: face.detector.detect(frames[fi()]), 3 * r)
    whole = median_ms(lambda: face.extract([frames[fi()]]), 3 * r)
    report["face"] = {
        "frame": list(frames[0].shape),
        "detect_ms": det,
        "detect_crop_embed_ms": whole,
        "detect_share": round(det / whole, 2),
        "cpu_ms_per_s": {fps: round(fps * whole, 1) for fps in (5, 10, 15, 30)},
    }
    words = "and I know how frustrating that must be when you are trying to work from home"
    report["text_ms"] = median_ms(lambda: ex.text(words), r)
    vad = SileroVAD()
    report["vad_ms_per_s"] = median_ms(lambda: vad.process(x[:sr], 0.0) and vad.reset(), r)
    ex.close()
    enc2, dec2 = report["encoder_ms"][2], report["decoder_ms"][2]
    report["per_second_of_media_ms"] = {
        "encoder_2_threads": enc2,
        "decoder_2_threads": dec2,
        "face_10fps": report["face"]["cpu_ms_per_s"][10],
        "text": report["text_ms"],
        "vad": report["vad_ms_per_s"],
    }
    emit(report, args.json)


if __name__ == "__main__":
    main()
