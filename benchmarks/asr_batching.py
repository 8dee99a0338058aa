"""Does batching windows of several streams pay on the Whisper encoder, on the decoder, or on both?

    python -m benchmarks.asr_batching [--media tests/data/streams/monologue_en_us.flac] \\
        [--batches 1,2,4,8,16] [--rounds 3] [--margin 0.5]

Cuts 4 s windows of speech from the media (as many as the largest batch), encodes each with the
offline profile's short context (the window plus ``--margin`` s), then per round and batch size, in an
interleaved order: the decoder (``WhisperASR.decode_batch``: greedy generation and word alignment, a
real prompt and prefix per window) and the encoder (CTranslate2's ``encode`` on the stacked log-mel
windows), each over all windows in batches of that size. Prints JSON: ms per window for each, and the
ratio to batch 1. The engine batches what pays (``engine/core/batched_asr.py``: the decoder only).
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
if str(ROOT) not in sys.path:  # run as a script: python benchmarks/asr_batching.py
    sys.path.insert(0, str(ROOT))

DEFAULT_MEDIA = ROOT / "tests" / "data" / "streams" / "monologue_en_us.flac"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--media", type=Path, default=DEFAULT_MEDIA)
    ap.add_argument("--batches", default="1,2,4,8,16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--margin", type=float, default=0.5, help="encoder context margin (s)")
    args = ap.parse_args(argv)
    if not args.media.is_file():
        print(f"error: no such media file: {args.media}", file=sys.stderr)
        return 2
    try:
        sizes = sorted({int(b) for b in args.batches.split(",") if b.strip()})
    except ValueError:
        ap.error(f"--batches must be comma-separated integers, got {args.batches!r}")
    if not sizes or sizes[0] < 1:
        ap.error("--batches must be positive")

    import ctranslate2
    from faster_whisper import decode_audio
    from faster_whisper.audio import pad_or_trim

    from models.encoders.asr import ASRConfig, DecodeRequest, WhisperASR, context_frames, encode_audio

    asr = WhisperASR(ASRConfig(context_margin_s=args.margin))
    audio = decode_audio(str(args.media), sampling_rate=16000)
    n, hop = 64000, 32000  # 4 s windows every 2 s
    windows = [audio[i : i + n] for i in range(0, len(audio) - n + 1, hop)]
    need = max(sizes)
    if len(windows) < need:
        print(f"error: {args.media} gives {len(windows)} windows, --batches needs {need}", file=sys.stderr)
        return 2
    windows = windows[:need]
    encoded = [encode_audio(asr.model, w, args.margin) for w in windows]
    # Each window's prompt and prefix as streaming gives them: the text before it, and its first words.
    texts = [asr.decode(e, n).text.split() for e in encoded]
    reqs = [
        DecodeRequest(e, n, " ".join(texts[i - 1] or ["Hello."]), " ".join(t[:3]) or None, prompt_tokens=8)
        for i, (e, t) in enumerate(zip(encoded, texts, strict=True))
    ]
    frames = context_frames(n // 160 + 1, args.margin)
    mels = [
        np.ascontiguousarray(pad_or_trim(asr.model.feature_extractor(w), frames), np.float32) for w in windows
    ]
    dec: dict[int, list[float]] = {b: [] for b in sizes}
    enc: dict[int, list[float]] = {b: [] for b in sizes}
    rng = np.random.default_rng(0)
    for _ in range(args.rounds):
        for b in (sizes[int(i)] for i in rng.permutation(len(sizes))):
            t = time.perf_counter()
            for i in range(0, need, b):
                asr.decode_batch(reqs[i : i + b])
            dec[b].append((time.perf_counter() - t) * 1e3 / need)
            t = time.perf_counter()
            for i in range(0, need, b):
                asr.model.model.encode(
                    ctranslate2.StorageView.from_array(np.stack(mels[i : i + b])), to_cpu=True
                )
            enc[b].append((time.perf_counter() - t) * 1e3 / need)
    d1, e1 = float(np.median(dec[sizes[0]])), float(np.median(enc[sizes[0]]))
    rows = [
        {
            "batch": b,
            "decoder_ms_per_window": round(float(np.median(dec[b])), 2),
            "decoder_vs_batch_1": round(float(np.median(dec[b])) / d1, 3),
            "encoder_ms_per_window": round(float(np.median(enc[b])), 2),
            "encoder_vs_batch_1": round(float(np.median(enc[b])) / e1, 3),
        }
        for b in sizes
    ]
    report = {
        "benchmark": "asr_batching",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "media": str(args.media),
        "windows": need,
        "window_s": 4.0,
        "context_margin_s": args.margin,
        "rounds": args.rounds,
        "batches": rows,
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
