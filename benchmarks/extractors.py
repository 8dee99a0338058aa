"""CPU cost of every feature extractor per second of media, on the bundled CREMA-D clips. Prints JSON.

    python benchmarks/extractors.py                # both profiles, 2 torch threads
    python benchmarks/extractors.py --clips 2 --repeat 3 --threads 1

Paper-profile models (BERT-base, wav2vec2-base, DenseFace) run with random weights: the cost of a
network does not depend on its weight values, and no pretrained copies are available offline.
"ms_per_media_s" is milliseconds of CPU wall time per second of media (audio seconds for speech/ASR,
video seconds at the profile's 30 fps for faces, utterance seconds for text); "rtf" = that / 1000.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LABELS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


def _time(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall seconds of ``fn`` over ``repeat`` runs after one warm-up run."""
    fn()
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=6, help="how many of the six CREMA-D clips")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs after one warm-up (median)")
    ap.add_argument(
        "--max-heavy",
        type=int,
        default=48,
        help="faces timed for DenseFace (wav2vec2: 2 clips); keeps runs short",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-paper", action="store_true", help="offline extractors only")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from models.encoders.asr import ASRConfig, WhisperASR
    from models.encoders.audio import load_audio
    from models.encoders.denseface import DenseFaceEmbedder
    from models.encoders.face import FaceDetector, crop_face
    from models.encoders.mini_xception import MiniXceptionEmbedder
    from models.encoders.speech import LogMelExtractor, Wav2Vec2Config, Wav2Vec2Extractor
    from models.encoders.text import TextConfig, TextEncoder
    from models.encoders.video import iter_frames

    clips = [REPO / "data" / "cremad" / f"1001_DFA_{lab}_XX.flv" for lab in LABELS[: args.clips]]
    t0 = time.perf_counter()
    audios = [load_audio(c) for c in clips]
    decode_audio_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    videos = [[f.rgb for f in iter_frames(c, 30.0)] for c in clips]
    decode_video_s = time.perf_counter() - t0
    audio_s = sum(len(a) for a in audios) / 16000.0
    video_s = sum(len(v) for v in videos) / 30.0
    n_frames = sum(len(v) for v in videos)
    transcript = "Don't forget a jacket"
    results: dict[str, dict[str, Any]] = {}

    def record(name: str, seconds: float, media_s: float, items: int, item: str) -> None:
        results[name] = {
            "ms_per_media_s": round(1000 * seconds / media_s, 3),
            "ms_per_item": round(1000 * seconds / items, 3),
            "item": item,
            "rtf": round(seconds / media_s, 4),
        }

    record("decode_audio(pyav+soxr)", decode_audio_s, audio_s, len(clips), "clip")
    record("decode_video(pyav,rgb)", decode_video_s, video_s, n_frames, "frame")

    asr = WhisperASR(ASRConfig(cpu_threads=args.threads))
    record(
        "asr:whisper-tiny.en-int8",
        _time(lambda: [asr.transcribe(a) for a in audios], args.repeat),
        audio_s,
        len(audios),
        "utterance",
    )
    logmel = LogMelExtractor()
    record(
        "speech:logmel-80",
        _time(lambda: [logmel(a) for a in audios], args.repeat),
        audio_s,
        len(audios),
        "utterance",
    )
    minilm = TextEncoder(TextConfig())
    record(
        "text:minilm-l6",
        _time(lambda: [minilm(transcript) for _ in audios], args.repeat),
        audio_s,
        len(audios),
        "utterance",
    )

    with FaceDetector() as det:
        boxes = []

        def detect_all() -> None:
            boxes.clear()
            boxes.extend(det.detect(f) for v in videos for f in v)

        record("face:detect-blazeface", _time(detect_all, args.repeat), video_s, n_frames, "frame")
        frames = [f for v in videos for f in v]
        found = [(f, b[0]) for f, b in zip(frames, boxes, strict=True) if b]
        crops64 = np.stack([crop_face(f, b, 0.1, 64) for f, b in found])
        record(
            "face:crop+gray+resize",
            _time(lambda: [crop_face(f, b, 0.1, 64) for f, b in found], args.repeat),
            video_s,
            len(found),
            "face",
        )
        mx = MiniXceptionEmbedder()
        record(
            "face:mini-xception(batch)", _time(lambda: mx(crops64), args.repeat), video_s, len(found), "face"
        )
        if not args.skip_paper:
            dense = DenseFaceEmbedder(random_init=True)
            sub = crops64[: args.max_heavy]  # per-face cost, scaled to every face found
            t_sub = _time(lambda: dense(sub), args.repeat)
            record("face:denseface(batch)", t_sub * len(found) / len(sub), video_s, len(found), "face")

    if not args.skip_paper:
        bert = TextEncoder(TextConfig(model="bert-base-uncased", init="random"))  # BERT-base shape
        record(
            "text:bert-base",
            _time(lambda: [bert(transcript) for _ in audios], args.repeat),  # short: 6 x 8 tokens
            audio_s,
            len(audios),
            "utterance",
        )
        w2v = Wav2Vec2Extractor(Wav2Vec2Config(init="random"))  # wav2vec2-base shape
        few = audios[:2]  # per-second cost, scaled to all the audio
        t_few = _time(lambda: [w2v(a) for a in few], args.repeat)
        few_s = sum(len(a) for a in few) / 16000.0
        record("speech:wav2vec2-base", t_few * audio_s / few_s, audio_s, len(audios), "utterance")

    def total(keys: list[str]) -> float:
        return round(sum(results[k]["ms_per_media_s"] for k in keys if k in results), 3)

    face_common = ["decode_video(pyav,rgb)", "face:detect-blazeface", "face:crop+gray+resize"]
    offline = [
        "decode_audio(pyav+soxr)",
        "asr:whisper-tiny.en-int8",
        "speech:logmel-80",
        "text:minilm-l6",
        *face_common,
        "face:mini-xception(batch)",
    ]
    paper = [
        "decode_audio(pyav+soxr)",
        "asr:whisper-tiny.en-int8",
        "speech:wav2vec2-base",
        "text:bert-base",
        *face_common,
        "face:denseface(batch)",
    ]
    summary: dict[str, Any] = {"offline_total_ms_per_media_s": total(offline)}
    if not args.skip_paper:
        summary["paper_total_ms_per_media_s"] = total(paper)
        summary["ratio_paper_over_offline"] = {
            "speech": round(
                results["speech:wav2vec2-base"]["ms_per_media_s"]
                / results["speech:logmel-80"]["ms_per_media_s"],
                2,
            ),
            "text": round(
                results["text:bert-base"]["ms_per_media_s"] / results["text:minilm-l6"]["ms_per_media_s"], 2
            ),
            "face_model": round(
                results["face:denseface(batch)"]["ms_per_media_s"]
                / results["face:mini-xception(batch)"]["ms_per_media_s"],
                2,
            ),
            "total": round(
                summary["paper_total_ms_per_media_s"] / summary["offline_total_ms_per_media_s"], 2
            ),
        }
    out = {
        "benchmark": "extractors",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": args.threads,
            "torch": torch.__version__,
        },
        "media": {
            "clips": len(clips),
            "audio_seconds": round(audio_s, 3),
            "video_frames": n_frames,
            "faces_found": len(found),
        },
        "results": results,
        "summary": summary,
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
