"""Speech features for emotion on unseen speakers: log-mel vs Whisper encoder states, measured the same way.

    python benchmarks/speech_features.py --root ../shared/data/ravdess-speech [--folds 5] [--json OUT] \
        [--margins 0.5,1,2]

For every RAVDESS clip of the four classes (ang, hap, neu, sad), both extractors of the offline profile
run on the same 16 kHz audio; each clip becomes the mean and standard deviation of its frames; a
class-balanced logistic regression (standardised inputs) is trained on the actors of k-1 folds and
tested on the held-out actors (actor i is in fold i % k), for each regularisation strength C. Prints
JSON: UAR/WAR per feature and C, the best of each, their ratio, and the extraction cost per second of
audio. Speaker-independent by construction: no actor is on both sides of a fold.

``--margins`` adds the Whisper states at each encoder context (the audio plus that many seconds of
padding, ``speech.whisper.context_margin_s``) next to the 30 s padded ones, with their UAR relative to
the padded states: what a short context does to the speech features.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CLASSES = ("ang", "hap", "neu", "sad")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, type=Path, help="RAVDESS folder (Actor_XX/*.wav|flac)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--limit", type=int, default=0, help="first N clips only (a quick look)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--margins", default="", help="comma-separated encoder context margins (s) to add")
    args = ap.parse_args(argv)
    try:
        margins = [float(m) for m in args.margins.split(",") if m.strip()]
    except ValueError:
        ap.error(f"--margins must be comma-separated seconds, got {args.margins!r}")

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import recall_score

    from models.encoders.audio import load_audio
    from models.encoders.speech import LogMelExtractor
    from models.encoders.whisper_states import WhisperStatesConfig, WhisperStatesExtractor
    from training.data.corpus import list_corpus

    utts = [u for u in list_corpus("ravdess", args.root) if u.label in CLASSES]
    if args.limit:
        utts = utts[: args.limit]
    extractors = {"logmel": LogMelExtractor(), "whisper": WhisperStatesExtractor()}
    for m in margins:
        extractors[f"whisper_margin_{m:g}s"] = WhisperStatesExtractor(WhisperStatesConfig(context_margin_s=m))
    pooled: dict[str, list[np.ndarray]] = {k: [] for k in extractors}
    cost = dict.fromkeys(extractors, 0.0)
    seconds = 0.0
    for u in utts:
        audio = load_audio(u.audio_path)
        seconds += len(audio) / 16000
        for name, ex in extractors.items():
            t0 = time.perf_counter()
            x = ex(audio)
            cost[name] += time.perf_counter() - t0
            pooled[name].append(np.concatenate([x.mean(0), x.std(0)]))
    y = np.array([CLASSES.index(u.label) for u in utts])
    speakers = sorted({u.speaker for u in utts})
    fold = np.array([speakers.index(u.speaker) % args.folds for u in utts])
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, rows in pooled.items():
        x = np.stack(rows)
        results[name] = {}
        for c in (0.01, 0.1, 1.0):
            pred = np.zeros_like(y)
            for k in range(args.folds):
                tr, te = fold != k, fold == k
                mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-8
                clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
                clf.fit((x[tr] - mu) / sd, y[tr])
                pred[te] = clf.predict((x[te] - mu) / sd)
            results[name][str(c)] = {
                "uar": float(recall_score(y, pred, average="macro")),
                "war": float((pred == y).mean()),
            }
    best = {n: max(r.values(), key=lambda m: m["uar"]) for n, r in results.items()}
    out = {
        "clips": len(utts),
        "speakers": len(speakers),
        "folds": args.folds,
        "audio_seconds": round(seconds, 1),
        "per_feature": results,
        "best": best,
        "uar_ratio_whisper_over_logmel": best["whisper"]["uar"] / best["logmel"]["uar"],
        "uar_ratio_over_padded_whisper": {
            n: best[n]["uar"] / best["whisper"]["uar"] for n in best if n.startswith("whisper_margin")
        },
        "cpu_seconds_per_audio_second": {n: c / seconds for n, c in cost.items()},
    }
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
