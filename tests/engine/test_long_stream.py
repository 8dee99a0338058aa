"""Long streams through the real engine with the default config: recognition keeps up over a minute and
more, stays accurate, and every window comes out.

The fixtures (tests/data/streams, made by tools/make_stream_fixtures.py): an 80 s synthetic monologue
with its script, and the six bundled CREMA-D clips concatenated five times (63 s, a face in view, the
same sentence 30 times). Replayed as fast as possible, these assert behaviour, not timing; timings
are benchmarks/live_stream.py's job.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from benchmarks.wer import wer
from engine import EmotionEvent
from engine.config import EngineConfig, load_engine_config
from engine.sources.file_replay import FileReplaySource
from tests.engine.conftest import run_engine

STREAMS = Path(__file__).resolve().parents[1] / "data" / "streams"
MONOLOGUE = STREAMS / "monologue_en_us.flac"
AV_STREAM = STREAMS / "cremad_1001_x5.mp4"


def default_config(*overrides: str) -> EngineConfig:
    cfg = load_engine_config("configs/engine/default.yaml", list(overrides))
    cfg.backend.name = "torch"  # the shared test backend (see conftest)
    return cfg


def speech_windows(events: list[EmotionEvent]) -> list[EmotionEvent]:
    """Windows whose audio holds speech by the engine's own VAD rule (audio_health.min_speech_ratio)."""
    floor = EngineConfig().audio_health.min_speech_ratio
    return [e for e in events if e.modalities["audio"].stats.get("speech_ratio", 0.0) >= floor]


def text_coverage(events: list[EmotionEvent]) -> float:
    sw = speech_windows(events)
    return sum(e.modalities["text"].state == "present" for e in sw) / max(1, len(sw))


def committed_transcript(events: list[EmotionEvent]) -> list[Any]:
    return [w for e in events for w in e.new_words]


def check_stream(events: list[EmotionEvent], duration: float, hop: float = 1.0, live: bool = False) -> None:
    assert [e.seq for e in events] == list(range(len(events)))  # gapless
    # Every window: one per hop, plus the closing window when the stream does not end on the grid. A
    # live stream that ends right on a window's end learns it after that window: one closing event
    # over the same span follows.
    n = {math.floor(duration / hop), math.ceil(duration / hop)}
    assert len(events) in (n | {max(n) + 1} if live else n), (len(events), duration)
    assert events[-1].final and not any(e.final for e in events[:-1])
    words = committed_transcript(events)
    # Each word committed once, in order (two words can share a start: alignment has 20 ms steps).
    assert all(b.start >= a.start for a, b in zip(words, words[1:], strict=False))
    keys = [(w.text.lower().strip(".,?!"), round(w.start, 2)) for w in words]
    assert len(set(keys)) == len(keys)
    assert all(w.committed for w in words)


def test_monologue_stays_accurate(extractors: Any, fusion: Any, backend: Any) -> None:
    cfg = default_config()
    events, eng = run_engine(
        cfg, [FileReplaySource(MONOLOGUE, fast=True, video=False)], extractors, fusion, backend
    )
    duration = sf.info(str(MONOLOGUE)).duration
    check_stream(events, duration)
    words = committed_transcript(events)
    err = wer((STREAMS / "monologue_en_us.txt").read_text(), [w.text for w in words])
    cov = text_coverage(events)
    assert len(speech_windows(events)) >= 0.9 * len(events)  # the fixture speaks all the way through
    assert cov >= 0.9, cov
    assert err <= 0.15, (err, " ".join(w.text for w in words))
    # The passes stay bounded: the same work per window at the end as at the start.
    asr_ms = [e.latency_ms["asr"] for e in events if "asr" in e.latency_ms]
    assert len(asr_ms) >= 0.9 * len(events)
    assert eng.asr.committed and len(eng.asr.committed) < 120  # the word list is trimmed as the stream runs


def test_av_stream_with_face(extractors: Any, fusion: Any, backend: Any) -> None:
    cfg = default_config()
    events, _ = run_engine(cfg, [FileReplaySource(AV_STREAM, fast=True)], extractors, fusion, backend)
    import av

    with av.open(str(AV_STREAM)) as c:
        duration = float(c.duration) / 1e6
    check_stream(events, duration)
    assert text_coverage(events) >= 0.9, text_coverage(events)
    faces = [e.modalities["video"].state == "present" for e in events]
    assert np.mean(faces) >= 0.9
    err = wer((STREAMS / "cremad_1001_x5.txt").read_text(), [w.text for w in committed_transcript(events)])
    assert err <= 0.15, err
    assert all(
        e.condition == "tav" for e in speech_windows(events)[2:] if e.modalities["text"].state == "present"
    )


def test_lagging_recognition_is_said_and_nothing_is_lost(
    extractors: Any, fusion: Any, backend: Any, tmp_path: Path
) -> None:
    """Live pace with a lag budget no pass can meet: every pass but the final window's is skipped, the
    text modality says "ASR lagging" (not "no speech"), and every window is still emitted in order. The
    final window's pass runs however late: it commits the stream's last words."""
    x, sr = sf.read(str(MONOLOGUE), dtype="float32")
    clip = tmp_path / "six_seconds.flac"
    sf.write(str(clip), x[: 6 * sr], sr)
    cfg = default_config("asr.max_lag_s=0.001")
    events, eng = run_engine(
        cfg, [FileReplaySource(clip, fast=False, video=False)], extractors, fusion, backend
    )
    check_stream(events, 6.0, live=True)
    skipped = [e for e in events if e.asr.get("state") == "skipped"]
    assert len(skipped) >= len(events) - 2 and eng.asr.skipped == len(skipped)
    assert events[-1].final and events[-1].asr.get("state") != "skipped" and events[-1].transcript.strip()
    reasons = {e.modalities["text"].reason for e in skipped if e.modalities["text"].state != "present"}
    assert reasons and all(r.startswith("ASR lagging") for r in reasons), reasons


def test_recognition_runs_once_per_window(extractors: Any, fusion: Any, backend: Any) -> None:
    """With the offline profile (and the default recognition span, the window) the speech features and
    recognition share one encoder pass; with a span longer than the window, each pass encodes its span
    once, and the speech features still cover the window alone."""
    calls = {"encode": 0}
    real = extractors.asr

    class Counting:
        cfg = real.cfg

        def encode(self, audio: np.ndarray) -> Any:
            calls["encode"] += 1
            return real.encode(audio)

        def decode(self, *a: Any, **k: Any) -> Any:
            return real.decode(*a, **k)

    from tests.engine.test_replay import Proxy

    clip = STREAMS.parents[2] / "data" / "cremad" / "1001_DFA_HAP_XX.flv"
    cfg = default_config()
    events, _ = run_engine(
        cfg, [FileReplaySource(clip, fast=True)], Proxy(extractors, asr=Counting()), fusion, backend
    )
    assert events and any(e.new_words for e in events)
    assert calls["encode"] == 0  # the decoder read the speech features' encoder output
    events, _ = run_engine(
        default_config("asr.span_s=8"),
        [FileReplaySource(clip, fast=True)],
        Proxy(extractors, asr=Counting()),
        fusion,
        backend,
    )
    assert "forget" in " ".join(w.text for e in events for w in e.new_words).lower()
    passes = sum("asr" in e.latency_ms for e in events)
    assert passes and calls["encode"] == passes  # one encoder pass over the span per decoder pass
    assert all("asr_encode" in e.latency_ms for e in events if "asr" in e.latency_ms)


def test_leaving_mid_stream_closes_at_once(extractors: Any, fusion: Any, backend: Any) -> None:
    """A consumer that stops reading after a few events and closes the engine is not left hanging
    (a cancellation swallowed by a consumer's wait used to make close() wait forever)."""
    import asyncio

    from engine import Engine

    async def go() -> int:
        eng = Engine(
            default_config(),
            [FileReplaySource(MONOLOGUE, fast=True, video=False)],
            extractors=extractors,
            fusion=fusion,
            backend=backend,
        )
        n = 0
        async with eng:
            async for _ in eng.events():
                n += 1
                if n == 3:
                    break
        return n

    assert asyncio.run(asyncio.wait_for(go(), timeout=60)) == 3


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
