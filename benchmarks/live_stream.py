"""Replay long streams through the real engine and report latency, drift, text coverage, WER and cost.

    python -m benchmarks.live_stream --media tests/data/streams/monologue_en_us.flac \\
        --reference tests/data/streams/monologue_en_us.txt [--fast] [--config FILE] [--set key=value ...] \\
        [--json OUT] [--seconds S]
    python -m benchmarks.live_stream --media tests/data/streams/monologue_en_us.flac \\
        --media tests/data/streams/cremad_1001_x5.mp4 --fast --seconds 15 --json out/live_stream.json

Each ``--media`` is replayed through its own ``Engine`` (a file with a video stream as video with its
own audio, any other file as audio only), one after another, at real-time pace or, with ``--fast``, as
fast as the engine goes; the extractors, the fusion model and its backend are loaded once and shared.
``--reference`` gives each media file's reference transcript, in the same order; without it a ``.txt``
with the media file's stem next to it is used when there is one. ``--seconds S`` stops a stream after
S seconds of media (the source ends there, as ``run_live.py --max-seconds`` does, and the engine
closes the stream with its final window).

Per run (``runs``):

- ``seconds``: media seconds replayed (the last event's end); ``media_duration_s``: the whole file;
  ``windows``: events; ``seq_gapless``: the events' ``seq`` are 0..n-1.
- ``e2e_ms`` {p50, p95, p99, max}: the events' end-to-end latency (last media of the window in ->
  event out). With ``--fast`` the source runs ahead of the engine, so it is not a live figure.
- ``drift_ms``: median e2e of the last quarter of the windows minus that of the first quarter, the
  first 3 windows left out as warm-up: a live engine that falls behind shows a growing latency.
- ``text_coverage``: among windows whose audio ``speech_ratio`` (VAD) is >= 0.05, the share whose text
  modality is "present"; ``text_coverage_speech_0.3``: the same over windows with ``speech_ratio`` >=
  0.3; ``text_missing_reasons``: how often each text reason occurs in the windows with speech (>= 0.05)
  whose text is not present.
- ``wer`` (+ ``wer_details``): word error rate of the committed words, joined in order, against the
  reference (``benchmarks/wer.py``: lower case, punctuation but apostrophes removed, numbers as
  written). The committed words are each event's ``new_words`` when the engine provides them (each
  committed word in exactly one event), otherwise the events' committed ``words`` de-duplicated by
  (text, start rounded to 10 ms) and ordered by start; ``words_source`` says which, and
  ``new_words_repeats`` counts words that ``new_words`` committed twice. A stream stopped by
  ``--seconds`` also gets ``wer_prefix``: the WER against the reference prefix that the transcript
  matches best (``wer`` counts the unplayed rest of the reference as deleted).
- ``offline_wer``: the same Whisper model run offline over the file (one faster-whisper ``transcribe``,
  beam 5, its Silero VAD filter; ``--seconds``: over that prefix), scored like ``wer``; ``wer_vs_offline``:
  the streaming WER over it (``--no-offline-wer`` skips the pass; it runs after the stream, untimed).
- ``commit_lag_s`` {p50, p95}: per committed word, the media seconds from its end to the end of the
  window whose pass committed it.
- ``asr_pass_ms`` {p50, p95, max} and ``audio_features_ms`` {p50, p95}: the events' ``latency_ms``;
  ``asr_passes``: windows that got a decoder pass; ``decoder_ms_per_audio_s``: decoder milliseconds
  per second of media; ``asr_encode_ms``: recognition's own encoder pass, when it does not share the
  speech features' one.
- ``targets``: the per-stream targets that apply to the run (``--fast``: RTF; live: e2e p95 and drift;
  both: WER against offline, commit lag, text coverage; an audio-only file: WER <= 10%), each with its
  value and ``met``.
- ``cpu_percent``: process CPU time (all threads, ``os.times``) / wall time x 100 over the stream, so
  200 is two cores busy; ``rss_mb`` and ``threads`` {start, end}: resident memory and OS threads of the
  process when the stream starts (models loaded) and when its last event is out (``/proc/self``);
  ``wall_s`` and ``rtf`` (wall time / ``seconds``).
- ``transcript``: the committed text (first 400 characters); ``errors``: the engine's errors.

Top level: ``machine``, ``config`` (file, overrides and the resolved window/ASR/text-health settings),
``model`` and ``runs``. The summary goes to stdout; ``--json OUT`` writes the same report plus each
run's per-event records (``events``: seq, times, latencies, modalities, transcript, words, new words).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import resource
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's native INFO lines
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.wer import prefix_wer, wer_details  # noqa: E402

WARMUP_WINDOWS = 3
OFFLINE_BEAM = 5  # faster-whisper transcribe's own default: the model's offline accuracy
# The per-stream-cost targets (docs/engine.md): (key, label, bound, "max" | "min", where it applies).
TARGETS = (
    ("wer_vs_offline", "committed-word WER / offline WER", 1.25, "max", "any"),
    ("commit_lag_p50_s", "commit lag p50 (s)", 1.5, "max", "any"),
    ("text_coverage", "text present in speech windows", 0.90, "min", "any"),
    ("e2e_p95_ms", "e2e p95 (ms)", 300.0, "max", "live"),
    ("drift_ms", "drift (ms)", 100.0, "max", "live"),
    ("rtf", "RTF", 0.20, "max", "fast"),
)
MONOLOGUE_WER = 0.10  # and at most this WER on an audio-only monologue
SPEECH_RATIO = 0.05
SPEECH_RATIO_HIGH = 0.3
TRANSCRIPT_CHARS = 400


# --------------------------------------------------------------------------------------------------
# process measurements (no psutil: os.times and /proc)
# --------------------------------------------------------------------------------------------------
def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def rss_mb() -> float:
    """Current resident set size (MiB); the peak where /proc is unavailable."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def thread_count() -> int:
    """OS threads of the process (native pools included); Python threads where /proc is unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return threading.active_count()


# --------------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------------
def pct(
    xs: list[float], qs: tuple[int, ...] = (50, 95, 99), with_max: bool = True
) -> dict[str, float] | None:
    if not xs:
        return None
    a = np.asarray(xs, dtype=np.float64)
    out = {f"p{q}": round(float(np.percentile(a, q)), 3) for q in qs}
    if with_max:
        out["max"] = round(float(a.max()), 3)
    return out


def drift_ms(e2e: list[float], warmup: int = WARMUP_WINDOWS) -> float | None:
    xs = e2e[warmup:]
    q = len(xs) // 4
    if q < 1:
        return None
    return round(float(np.median(xs[-q:]) - np.median(xs[:q])), 3)


def _word_key(w: Any) -> tuple[str, float]:
    return (w.text, round(float(w.start), 2))


def _word(w: Any) -> list[Any]:
    r = round
    return [w.text, r(float(w.start), 3), r(float(w.end), 3), r(float(w.probability), 3), w.committed]


def event_record(ev: Any) -> dict[str, Any]:
    rec = {
        "seq": ev.seq,
        "t_start": round(ev.t_start, 3),
        "t_end": round(ev.t_end, 3),
        "final": getattr(ev, "final", False),
        "e2e_latency_ms": round(float(ev.e2e_latency_ms), 3),
        "latency_ms": {k: round(float(v), 3) for k, v in ev.latency_ms.items()},
        "modalities": {
            m: {
                "state": h.state,
                "reason": h.reason,
                "stats": {k: round(float(v), 4) for k, v in h.stats.items()},
            }
            for m, h in ev.modalities.items()
        },
        "transcript": ev.transcript,
        "words": [_word(w) for w in ev.words],
    }
    if hasattr(ev, "new_words"):
        rec["new_words"] = [_word(w) for w in ev.new_words]
    return rec


def committed_words(events: list[Any]) -> tuple[list[str], str, int]:
    """The committed words in order, where they came from, and how many times ``new_words`` repeated a
    word (text, start) that an earlier event had already committed (0 when the engine keeps its
    contract)."""
    if events and all(hasattr(ev, "new_words") for ev in events):
        seen: set[tuple[str, float]] = set()
        words, repeats = [], 0
        for ev in events:
            for w in ev.new_words:
                k = _word_key(w)
                repeats += k in seen
                seen.add(k)
                words.append(w.text)
        return words, "new_words", repeats
    unique: dict[tuple[str, float], Any] = {}
    for ev in events:
        for w in ev.words:
            if w.committed:
                unique.setdefault(_word_key(w), w)
    ordered = sorted(unique.values(), key=lambda w: float(w.start))
    return [w.text for w in ordered], "words (deduplicated)", 0


def commit_lags(events: list[Any]) -> list[float]:
    """Per committed word (``new_words``): media seconds from the word's end to the end of the window
    whose pass committed it (how much more audio the engine heard before the word was final)."""
    return [max(0.0, float(ev.t_end) - float(w.end)) for ev in events for w in getattr(ev, "new_words", [])]


def offline_transcript(asr: Any, media: Path, seconds: float | None) -> tuple[str, float]:
    """One faster-whisper ``transcribe`` of the media's audio (up to ``seconds``) with the engine's own
    Whisper model, beam 5 and faster-whisper's Silero VAD filter: what the same model reads offline.
    (On cremad_1001_x5, one sentence 30 times, offline Whisper writes the sentence far more often than
    it is said, 155% WER, with or without the filter or conditioning on earlier text; the ratio is then
    no test of the streaming path.) Returns (text, wall seconds)."""
    from faster_whisper import decode_audio

    audio = decode_audio(str(media), sampling_rate=16000)
    if seconds is not None:
        audio = audio[: int(seconds * 16000)]
    t = time.perf_counter()
    segments, _ = asr.model.transcribe(
        audio, language=asr.cfg.language, beam_size=OFFLINE_BEAM, vad_filter=True, word_timestamps=False
    )
    text = " ".join(seg.text.strip() for seg in segments)
    return text, time.perf_counter() - t


def target_checks(r: dict[str, Any], audio_only: bool) -> list[dict[str, Any]]:
    """Each target that applies to run ``r`` (live or --fast), its value and whether it is met."""
    e2e = r["e2e_ms"] or {}
    lag = r["commit_lag_s"] or {}
    values = {
        "wer_vs_offline": r.get("wer_vs_offline"),
        "commit_lag_p50_s": lag.get("p50"),
        "text_coverage": r["text_coverage"],
        "e2e_p95_ms": e2e.get("p95"),
        "drift_ms": r["drift_ms"],
        "rtf": r["rtf"],
    }
    mode = "fast" if r["fast"] else "live"
    rows = []
    for key, label, bound, kind, where in TARGETS:
        if where not in ("any", mode):
            continue
        v = values[key]
        met = None if v is None else (v <= bound if kind == "max" else v >= bound)
        rows.append(
            {"what": label, "value": v, "target": f"{'<=' if kind == 'max' else '>='} {bound}", "met": met}
        )
    if audio_only and r["wer"] is not None:
        rows.append(
            {
                "what": "WER, audio-only monologue",
                "value": r["wer"],
                "target": f"<= {MONOLOGUE_WER}",
                "met": r["wer"] <= MONOLOGUE_WER,
            }
        )
    return rows


def text_coverage(events: list[Any], min_ratio: float) -> tuple[float | None, int]:
    speech = [ev for ev in events if _speech_ratio(ev) >= min_ratio]
    if not speech:
        return None, 0
    present = sum(_text_state(ev) == "present" for ev in speech)
    return round(present / len(speech), 4), len(speech)


def _text_state(ev: Any) -> str | None:
    text = ev.modalities.get("text")
    return text.state if text is not None else None


def _speech_ratio(ev: Any) -> float:
    audio = ev.modalities.get("audio")
    return float(audio.stats.get("speech_ratio", -1.0)) if audio is not None else -1.0


def run_metrics(
    media: Path,
    events: list[Any],
    reference: str | None,
    *,
    fast: bool,
    duration: float | None,
    wall: float,
    cpu: float,
    rss: tuple[float, float],
    threads: tuple[int, int],
    errors: list[str],
    stopped_early: bool,
) -> dict[str, Any]:
    seconds = max((ev.t_end for ev in events), default=0.0)
    e2e = [float(ev.e2e_latency_ms) for ev in events]
    words, words_source, repeats = committed_words(events)
    text = " ".join(words)
    details = prefix = None
    if reference is not None:
        try:
            details = wer_details(reference, text)
            prefix = prefix_wer(reference, text) if stopped_early else None
        except ValueError:  # an empty reference
            pass
    cov, n_speech = text_coverage(events, SPEECH_RATIO)
    cov_hi, n_speech_hi = text_coverage(events, SPEECH_RATIO_HIGH)
    reasons = Counter(
        ev.modalities["text"].reason or ev.modalities["text"].state
        for ev in events
        if _speech_ratio(ev) >= SPEECH_RATIO and _text_state(ev) not in (None, "present")
    )
    asr_ms = [float(ev.latency_ms["asr"]) for ev in events if "asr" in ev.latency_ms]
    feat_ms = [float(ev.latency_ms["audio_features"]) for ev in events if "audio_features" in ev.latency_ms]
    enc_ms = [float(ev.latency_ms["asr_encode"]) for ev in events if "asr_encode" in ev.latency_ms]
    lags = commit_lags(events)
    notes = [f"drift_ms leaves out the first {WARMUP_WINDOWS} windows as warm-up"]
    if fast:
        notes.append("--fast: the source runs ahead of the engine; e2e and drift are not live figures")
    if stopped_early:
        notes.append(
            "stopped at --seconds: wer counts the unplayed rest of the reference as deleted; wer_prefix "
            "scores against the reference prefix the transcript matches best"
        )
    if reference is None:
        notes.append("no reference transcript: wer is null")
    if words_source != "new_words":
        notes.append("events have no new_words: committed words de-duplicated by (text, start)")
    return {
        "media": _rel(media),
        "seconds": round(seconds, 3),
        "media_duration_s": round(duration, 3) if duration is not None else None,
        "fast": fast,
        "windows": len(events),
        "seq_gapless": [ev.seq for ev in events] == list(range(len(events))),
        "e2e_ms": pct(e2e),
        "drift_ms": drift_ms(e2e),
        "text_coverage": cov,
        "text_coverage_speech_0.3": cov_hi,
        "speech_windows": n_speech,
        "speech_windows_0.3": n_speech_hi,
        "text_missing_reasons": dict(reasons.most_common()),
        "wer": round(float(details["wer"]), 4) if details else None,
        "wer_details": details,
        "wer_prefix": round(float(prefix["wer"]), 4) if prefix else None,
        "wer_prefix_ref_words": prefix["ref_words"] if prefix else None,
        "words_source": words_source,
        "new_words_repeats": repeats if words_source == "new_words" else None,
        "asr_pass_ms": pct(asr_ms, (50, 95)),
        "asr_passes": len(asr_ms),
        "decoder_ms_per_audio_s": round(sum(asr_ms) / seconds, 2) if seconds > 0 else None,
        "asr_encode_ms": pct(enc_ms, (50, 95), with_max=False),
        "commit_lag_s": pct(lags, (50, 95), with_max=False),
        "audio_features_ms": pct(feat_ms, (50, 95), with_max=False),
        "cpu_percent": round(100.0 * cpu / wall, 1) if wall > 0 else None,
        "rss_mb": {"start": round(rss[0], 1), "end": round(rss[1], 1)},
        "threads": {"start": threads[0], "end": threads[1]},
        "wall_s": round(wall, 3),
        "rtf": round(wall / seconds, 4) if seconds > 0 else None,
        "transcript": text[:TRANSCRIPT_CHARS],
        "errors": errors,
        "notes": notes,
    }


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


# --------------------------------------------------------------------------------------------------
# replay
# --------------------------------------------------------------------------------------------------
def probe(path: Path) -> tuple[bool, float | None]:
    """Whether the file has a video stream, and its duration (s) when the container says."""
    import av

    with av.open(str(path)) as c:
        has_video = bool(c.streams.video)
        if c.duration:
            return has_video, c.duration / 1e6
        durs = [float(s.duration * s.time_base) for s in c.streams if s.duration and s.time_base]
        return has_video, max(durs) if durs else None


async def replay(
    cfg: Any, media: Path, models: tuple[Any, Any, Any], fast: bool, seconds: float | None
) -> tuple[list[Any], dict[str, Any]]:
    """One stream through a fresh engine on the shared models. The file is replayed as ``run_live.py
    --video``/``--audio`` does; ``seconds`` ends the source after that much media (``--max-seconds``), so
    the stream closes with its final window instead of the engine being torn down mid-stream."""
    from engine import Engine
    from engine.sources import FileReplaySource

    ex, fm, backend = models
    has_video, duration = probe(media)
    name = media.name if has_video else f"{media.name}:audio"
    src = FileReplaySource(media, fast=fast, audio=True, video=has_video, max_seconds=seconds, name=name)
    eng = Engine(cfg, [src], extractors=ex, fusion=fm, backend=backend, announce_untrained=False)
    events: list[Any] = []
    rss0, thr0 = rss_mb(), thread_count()
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    async with eng:
        async with contextlib.aclosing(eng.events()) as stream:
            async for ev in stream:
                events.append(ev)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        rss1, thr1 = rss_mb(), thread_count()
    end = max((ev.t_end for ev in events), default=0.0)
    measured = {
        "duration": duration,
        "wall": wall,
        "cpu": cpu,
        "rss": (rss0, rss1),
        "threads": (thr0, thr1),
        "errors": list(eng.errors),
        "stopped_early": seconds is not None and (duration is None or end < duration - 0.5),
        "has_video": has_video,
    }
    return events, measured


def add_offline_wer(r: dict[str, Any], asr: Any, media: Path, ref: str, seconds: float | None) -> None:
    text, wall = offline_transcript(asr, media, seconds)
    try:
        off = prefix_wer(ref, text) if seconds is not None else wer_details(ref, text)
    except ValueError:
        return
    r["offline_wer"] = round(float(off["wer"]), 4)
    r["offline_transcribe_s"] = round(wall, 2)
    ours = r["wer_prefix"] if seconds is not None else r["wer"]
    r["wer_vs_offline"] = (
        round(ours / r["offline_wer"], 3) if ours is not None and r["offline_wer"] > 0 else None
    )


async def replay_all(
    cfg: Any,
    media: list[Path],
    refs: list[str | None],
    models: tuple[Any, Any, Any],
    args: argparse.Namespace,
) -> list[tuple[dict[str, Any], list[Any]]]:
    out = []
    for path, ref in zip(media, refs, strict=True):
        events, m = await replay(cfg, path, models, args.fast, args.seconds)
        has_video = m.pop("has_video")
        metrics = run_metrics(path, events, ref, fast=args.fast, **m)
        if ref is not None and not args.no_offline_wer:  # after the stream: it does not load the replay
            add_offline_wer(metrics, models[0].asr, path, ref, args.seconds if m["stopped_early"] else None)
        metrics["targets"] = target_checks(metrics, audio_only=not has_video)
        out.append((metrics, events))
        _log(summary_line(metrics))
        for t in metrics["targets"]:
            verdict = "n/a" if t["met"] is None else "met" if t["met"] else "MISSED"
            _log(f"  {t['what']}: {t['value']} (target {t['target']}): {verdict}")
    return out


def summary_line(r: dict[str, Any]) -> str:
    e2e = r["e2e_ms"] or {}
    return (
        f"{r['media']}: {r['windows']} windows over {r['seconds']:.1f} s, rtf {r['rtf']}, "
        f"e2e p50 {e2e.get('p50')} p95 {e2e.get('p95')} ms, drift {r['drift_ms']} ms, "
        f"text coverage {r['text_coverage']}, wer {r['wer']} (offline {r.get('offline_wer')}), "
        f"commit lag p50 {(r['commit_lag_s'] or {}).get('p50')} s, cpu {r['cpu_percent']}%"
    )


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def references(media: list[Path], given: list[str]) -> list[str | None]:
    if given and len(given) != len(media):
        raise ValueError(f"{len(given)} --reference for {len(media)} --media (give one per media or none)")
    out: list[str | None] = []
    for i, m in enumerate(media):
        p = Path(given[i]) if given else m.with_suffix(".txt")
        if given and not p.is_file():
            raise ValueError(f"reference {p} does not exist")
        out.append(p.read_text(encoding="utf-8") if p.is_file() else None)
    return out


def config_report(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"file": args.config, "overrides": list(args.set)}
    for section in ("window", "asr", "text_health", "audio_health"):
        v = getattr(cfg, section, None)
        if dataclasses.is_dataclass(v):
            out[section] = dataclasses.asdict(v)
    for key in ("checkpoint", "extractors", "vad"):
        if hasattr(cfg, key):
            out[key] = getattr(cfg, key)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--media", action="append", required=True, metavar="PATH", help="media file to replay (repeatable)"
    )
    ap.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="TXT",
        help="reference transcript, one per --media in order (default: <media stem>.txt when it exists)",
    )
    ap.add_argument("--fast", action="store_true", help="replay as fast as the engine goes, not at real time")
    ap.add_argument("--config", metavar="YAML", help="engine config (configs/engine/default.yaml if absent)")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="engine config override (repeatable)"
    )
    ap.add_argument("--seconds", type=float, metavar="S", help="stop each stream after S seconds of media")
    ap.add_argument("--json", metavar="OUT", help="also write the report, with per-event records, here")
    ap.add_argument(
        "--no-offline-wer",
        action="store_true",
        help="skip the offline reference pass (one beam-5 transcribe of each file with the same model)",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    media = [Path(m) for m in args.media]
    missing = [str(m) for m in media if not m.is_file()]
    if missing:
        _log(f"error: no such media file: {', '.join(missing)}")
        return 2
    try:
        refs = references(media, args.reference)
    except ValueError as e:
        _log(f"error: {e}")
        return 2

    from engine import UNTRAINED_BANNER, load_extractors
    from engine.config import build_engine_config
    from engine.stages.fusion import build_backend, load_fusion_model

    try:
        cfg = build_engine_config(args.config, args.set)
    except (ValueError, FileNotFoundError) as e:
        _log(f"error: bad configuration: {e}")
        return 2
    _log(f"loading models ({len(media)} stream{'s' if len(media) > 1 else ''} to replay)...")
    t0 = time.perf_counter()
    ex = load_extractors(cfg)
    try:
        fm = load_fusion_model(cfg, ex.describe(), ex.dims)
        backend = build_backend(fm, cfg)
        load_s = time.perf_counter() - t0
        if not fm.trained:
            _log(UNTRAINED_BANNER)
        try:
            results = asyncio.run(replay_all(cfg, media, refs, (ex, fm, backend), args))
        finally:
            backend.close()
    finally:
        ex.close()
    report = {
        "benchmark": "live_stream",
        "machine": {
            "cpus": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "config": config_report(cfg, args),
        "model": {"id": fm.identity, "trained": bool(fm.trained)},
        "load_s": round(load_s, 3),
        "seconds_limit": args.seconds,
        "runs": [m for m, _ in results],
    }
    print(json.dumps(report, indent=1))
    if args.json:
        full = dict(report, runs=[dict(m, events=[event_record(ev) for ev in evs]) for m, evs in results])
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(full, indent=1) + "\n")
        _log(f"report written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
