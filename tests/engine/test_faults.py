"""Faults in the engine's own stages and sinks: the stream keeps running, the affected part is marked
within a window with the right reason, seq stays gapless, no event is lost, and the stream recovers when
the fault ends. (NaN features, a failing recogniser and corrupt files: test_replay.py; sources that
disappear or stall: test_sources.py; a camera unplugged and back, a muted microphone and a file damaged
half-way through the whole engine: test_live_faults.py.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from engine import EmotionEvent, Engine
from engine.sinks.base import Sink
from engine.sources import FileReplaySource
from tests.engine.conftest import config, run_engine
from tests.engine.media import ANG
from tests.engine.test_replay import Proxy


def gapless(events: list[EmotionEvent]) -> None:
    assert [e.seq for e in events] == list(range(len(events)))


class FlakyBackend:
    """The real fusion backend, failing on the windows whose index is in ``bad``."""

    def __init__(self, real: Any, bad: set[int]) -> None:
        self.real, self.bad, self.calls = real, bad, 0
        self.name = "flaky"

    def infer(self, inputs: Any) -> Any:
        i, self.calls = self.calls, self.calls + 1
        if i in self.bad:
            raise RuntimeError("device lost")
        return self.real.infer(inputs)

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, str]:
        return {"name": self.name}


def test_fusion_backend_failure_is_one_degraded_event(extractors: Any, fusion: Any, backend: Any) -> None:
    flaky = FlakyBackend(backend, bad={1})
    cfg = config(window_s=1.0, hop_s=0.5, asr=False)
    events, _ = run_engine(cfg, [FileReplaySource(ANG, fast=True)], extractors, fusion, flaky)
    gapless(events)
    assert len(events) >= 4
    bad, good = events[1], [e for i, e in enumerate(events) if i != 1]
    assert bad.probs is None and any("device lost" in x for x in bad.errors), bad.errors
    assert all(m.reason == "window processing failed" for m in bad.modalities.values())
    assert all(e.probs is not None for e in good)  # before and after: fused again


def test_face_stage_failure_marks_video_missing_then_recovers(
    extractors: Any, fusion: Any, backend: Any
) -> None:
    face = extractors.face
    calls = {"n": 0}

    class FlakyFace:
        embedder = face.embedder

        def extract(self, frames: Any) -> Any:
            calls["n"] += 1
            if calls["n"] in (2, 3, 4):
                raise RuntimeError("camera returned garbage")
            return face.extract(frames)

        def reset(self) -> None:
            face.reset()

    cfg = config(window_s=0.5, hop_s=0.5, asr=False)
    src = FileReplaySource(ANG, fast=True)
    events, _ = run_engine(cfg, [src], Proxy(extractors, face=FlakyFace()), fusion, backend)
    gapless(events)
    states = [e.modalities["video"].state for e in events]
    failed = [e for e in events if any("camera returned garbage" in x for x in e.errors)]
    assert failed, states
    marked = [e.modalities["video"] for e in events if e.modalities["video"].state != "present"]
    assert marked and all(v.reason.startswith("face analysis failed: RuntimeError") for v in marked), marked
    after = events[events.index(failed[-1]) + 1 :]
    assert any(e.modalities["video"].state == "present" for e in after), states  # and after it


class SlowSink(Sink):
    name = "slow"

    def __init__(self, delay: float) -> None:
        self.delay, self.got = delay, []

    async def handle(self, event: EmotionEvent) -> None:
        await asyncio.sleep(self.delay)
        self.got.append(event.seq)


class BrokenSink(Sink):
    name = "broken"

    def __init__(self) -> None:
        self.got: list[int] = []

    async def handle(self, event: EmotionEvent) -> None:
        self.got.append(event.seq)
        if event.seq == 1:
            raise OSError("disk full")


def test_slow_and_broken_sinks_hold_nothing_back(extractors: Any, fusion: Any, backend: Any) -> None:
    """A sink that takes 1 s per event does not slow the windows down (they are out long before it has
    handled them), still gets every event in order by close, and a sink that raises once keeps getting
    the rest; the events() consumer sees every event too."""
    slow, broken = SlowSink(1.0), BrokenSink()

    async def go() -> tuple[list[EmotionEvent], int, Engine]:
        eng = Engine(
            config(window_s=0.5, hop_s=0.5, asr=False),
            [FileReplaySource(ANG, fast=True)],
            [slow, broken],
            extractors=extractors,
            fusion=fusion,
            backend=backend,
        )
        events: list[EmotionEvent] = []
        async with eng:
            async for ev in eng.events():
                events.append(ev)
            handled_when_out = len(slow.got)
        return events, handled_when_out, eng

    events, handled_when_out, eng = asyncio.run(asyncio.wait_for(go(), timeout=120))
    gapless(events)
    n = len(events)
    assert n >= 4
    assert slow.got == list(range(n)) and broken.got == list(range(n))
    # Every window was out while the slow sink still had at least two events to go: a sink in the
    # windows' path would have handled all but the last by then (counts, not clock margins).
    assert handled_when_out <= n - 2, (handled_when_out, n)
    assert any("sink broken: OSError: disk full" in x for x in eng.errors)


def test_a_sink_that_never_finishes_is_reported_not_waited_on(
    extractors: Any, fusion: Any, backend: Any
) -> None:
    stuck = SlowSink(3600.0)
    cfg = config(window_s=0.5, hop_s=0.5, asr=False)
    cfg.queues.sink_drain_s = 0.5
    t = time.monotonic()
    events, eng = run_engine(
        cfg, [FileReplaySource(ANG, fast=True)], extractors, fusion, backend, sinks=[stuck]
    )
    assert time.monotonic() - t < 60
    gapless(events)
    assert any(f"{len(events)} event(s) not delivered" in x for x in eng.errors), eng.errors


def test_a_window_loop_failure_stops_the_stream_with_the_reason(
    extractors: Any, fusion: Any, backend: Any, caplog: Any
) -> None:
    """The window loop itself failing (once: a NaN hop did it) ends the stream with the reason in
    ``failure`` and ``errors`` and one logged error, never silently with no events."""

    async def go() -> Engine:
        eng = Engine(
            config(window_s=1.0, hop_s=0.5, asr=False),
            [FileReplaySource(ANG, fast=True)],
            extractors=extractors,
            fusion=fusion,
            backend=backend,
        )
        async with eng:
            real, calls = eng.loop.schedule.next_end, [0]

            def next_end() -> float:
                calls[0] += 1
                if calls[0] > 3:
                    raise ValueError("schedule broke")
                return real()

            eng.loop.schedule.next_end = next_end
            await asyncio.wait_for(eng.wait(), 60)
        return eng

    with caplog.at_level("ERROR", logger="engine"):
        eng = asyncio.run(go())
    assert eng.failure is not None and "schedule broke" in eng.failure
    assert any("schedule broke" in e for e in eng.errors)
    assert any("window loop" in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_dropout_does_not_count_as_latency(extractors: Any, fusion: Any, backend: Any) -> None:
    """A live client that stops sending for 4 s: the windows in the gap are released by the live
    deadline and say so in their e2e latency (about live_wait_s), not the time since the last audio."""
    import numpy as np

    from engine.sources.push import PushSource
    from tests.serve.test_server import clip_audio

    pcm, sr = clip_audio()

    async def go() -> list[EmotionEvent]:
        src = PushSource(audio=True, video=False)
        eng = Engine(
            config(window_s=2.0, hop_s=1.0, asr=False),
            [src],
            extractors=extractors,
            fusion=fusion,
            backend=backend,
        )
        events: list[EmotionEvent] = []

        async def feed() -> None:
            t0 = time.monotonic()
            for i in range(0, 7 * sr, sr // 10):
                t = i / sr
                if 2.0 <= t < 6.0:  # the dropout: nothing is sent
                    continue
                await asyncio.sleep(max(0.0, t0 + t - time.monotonic()))
                src.push_audio(np.resize(pcm, sr // 10), sr, t)
            src.end()

        async with eng:
            feeder = asyncio.create_task(feed())
            async for ev in eng.events():
                events.append(ev)
            await feeder
        return events

    events = asyncio.run(go())
    gapless(events)
    in_gap = [e for e in events if 3.0 <= e.t_end <= 6.0]
    assert len(in_gap) >= 3 and all(e.modalities["audio"].state != "present" for e in in_gap)
    assert max(e.e2e_latency_ms for e in in_gap) < 1500.0, [round(e.e2e_latency_ms) for e in in_gap]
