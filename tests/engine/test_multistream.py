"""Two engines (two streams) in one process share one BatchingBackend and get the events they get alone."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from engine import EmotionEvent, Engine, EngineConfig, load_extractors
from engine.backends import BatchingBackend
from engine.sources import FileReplaySource
from tests.engine.conftest import config, run_engine
from tests.engine.media import ANG


def test_two_streams_share_a_batching_backend(extractors: Any, fusion: Any, backend: Any) -> None:
    solo, _ = run_engine(config(asr=False), [FileReplaySource(ANG, fast=True)], extractors, fusion, backend)
    second = load_extractors(EngineConfig())  # native detectors are not shared between concurrent streams
    shared = BatchingBackend(backend, max_batch=8, max_wait_ms=20.0)

    async def stream(ex: Any) -> list[EmotionEvent]:
        eng = Engine(config(asr=False), [FileReplaySource(ANG, fast=True)], extractors=ex, fusion=fusion,
                     backend=shared)
        async with eng:
            return [ev async for ev in eng.events()]

    async def both() -> list[list[EmotionEvent]]:
        return await asyncio.gather(stream(extractors), stream(second))

    try:
        a, b = asyncio.run(asyncio.wait_for(both(), timeout=240))
    finally:
        shared.stop()
        second.close()
    assert shared.stats.windows == len(a) + len(b) == 2 * len(solo)
    for events in (a, b):
        assert [e.seq for e in events] == list(range(len(solo)))
        for e, ref in zip(events, solo, strict=True):
            assert e.condition == ref.condition
            assert np.allclose(list(e.probs.values()), list(ref.probs.values()), atol=1e-5)
