"""What a window's Whisper encoder pass costs at each encoder context: 30 s padded against the window
plus a margin (``asr.context_margin_s`` / ``speech.whisper.context_margin_s``).

    python -m benchmarks.encoder_context [--media tests/data/streams/monologue_en_us.flac] \\
        [--window-s 4] [--margins 0,0.25,0.5,1,2,4] [--windows 12] [--rounds 3] [--threads 0]

Windows of ``--window-s`` seconds are cut from the media every ``window_s`` seconds (``--windows`` of
them); every round encodes each window at every context, in an interleaved order, so that the machine's
noise falls on all of them alike. Per context: the encoder frames, encoder ms {p50, p95}, the greedy
decode's ms p50 over the same windows, and the ratio of the encoder p50 to the padded one's. The WER
that each margin gives on the long streams is ``benchmarks/live_stream``'s job (``--set``
``asr.context_margin_s``); docs/engine.md has both curves.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: python benchmarks/encoder_context.py
    sys.path.insert(0, str(ROOT))

DEFAULT_MEDIA = ROOT / "tests" / "data" / "streams" / "monologue_en_us.flac"


def parse_margins(text: str) -> list[float | None]:
    try:
        return [None, *(float(m) for m in text.split(",") if m.strip())]
    except ValueError as e:
        raise SystemExit(f"error: --margins must be comma-separated seconds, got {text!r}") from e


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--media", type=Path, default=DEFAULT_MEDIA)
    ap.add_argument("--window-s", type=float, default=4.0)
    ap.add_argument("--margins", default="0,0.25,0.5,1,2,4")
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="CTranslate2 threads (0: one per core, at most 4)")
    args = ap.parse_args(argv)
    if not args.media.is_file():
        print(f"error: no such media file: {args.media}", file=sys.stderr)
        return 2
    margins = parse_margins(args.margins)

    from faster_whisper import decode_audio

    from models.encoders.asr import ASRConfig, WhisperASR, context_frames, encode_audio

    asr = WhisperASR(ASRConfig(cpu_threads=args.threads))
    audio = decode_audio(str(args.media), sampling_rate=16000)
    n = int(args.window_s * 16000)
    windows = [audio[i : i + n] for i in range(0, len(audio) - n + 1, n)][: args.windows]
    if not windows:
        print(f"error: {args.media} is shorter than one {args.window_s:g} s window", file=sys.stderr)
        return 2
    enc_ms: dict[str, list[float]] = {str(m): [] for m in margins}
    dec_ms: dict[str, list[float]] = {str(m): [] for m in margins}
    encode_audio(asr.model, windows[0], None)  # warm-up
    rng = np.random.default_rng(0)
    for r in range(args.rounds):
        for w in windows:
            for m in rng.permutation(len(margins)):
                margin = margins[int(m)]
                t = time.perf_counter()
                enc = encode_audio(asr.model, w, margin)
                enc_ms[str(margin)].append((time.perf_counter() - t) * 1e3)
                if r == 0:  # the decoder does not depend on the round: once per window
                    t = time.perf_counter()
                    asr.decode(enc, len(w))
                    dec_ms[str(margin)].append((time.perf_counter() - t) * 1e3)
    padded = float(np.median(enc_ms["None"]))
    rows = []
    for m in margins:
        e = np.asarray(enc_ms[str(m)])
        rows.append(
            {
                "context_margin_s": m,
                "encoder_frames": context_frames(n // 160 + 1, m) // 2,
                "encoder_ms": {
                    "p50": round(float(np.median(e)), 2),
                    "p95": round(float(np.percentile(e, 95)), 2),
                },
                "decoder_ms_p50": round(float(np.median(dec_ms[str(m)])), 2),
                "encoder_vs_padded": round(float(np.median(e)) / padded, 4),
            }
        )
    report = {
        "benchmark": "encoder_context",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "media": str(args.media),
        "window_s": args.window_s,
        "windows": len(windows),
        "rounds": args.rounds,
        "contexts": rows,
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
