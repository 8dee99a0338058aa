"""Shared, loaded-once models for the engine tests (the real offline extractors and one exported graph)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

import pytest

os.environ.setdefault("GLOG_minloglevel", "2")

from engine import EmotionEvent, Engine, EngineConfig  # noqa: E402
from engine.config import ASRStreamConfig, WindowConfig  # noqa: E402
from engine.sources.base import Source  # noqa: E402
from engine.stages.fusion import build_backend, load_fusion_model  # noqa: E402


@pytest.fixture(scope="session")
def extractors() -> Any:
    from engine import load_extractors

    ex = load_extractors(EngineConfig())
    yield ex
    ex.close()


@pytest.fixture(scope="session")
def fusion(extractors: Any) -> Any:
    return load_fusion_model(EngineConfig(), extractors.describe(), extractors.dims)


@pytest.fixture(scope="session")
def backend(fusion: Any) -> Any:
    """Engine tests fuse with the torch backend: exporting the full graph for onnxruntime takes tens of
    seconds on 2 cores. The onnxruntime backend (the default) is tested in test_backends.py on a small
    CM-ARR, including its parity with torch."""
    cfg = EngineConfig()
    cfg.backend.name = "torch"
    b = build_backend(fusion, cfg)
    yield b
    b.close()


def config(window_s: float = 3.0, hop_s: float = 1.0, asr: bool = True, **kw: Any) -> EngineConfig:
    return EngineConfig(
        window=WindowConfig(window_s=window_s, hop_s=hop_s), asr=ASRStreamConfig(enabled=asr), **kw
    )


def run_engine(
    cfg: EngineConfig, sources: Sequence[Source], ex: Any, fusion: Any, backend: Any, **kw: Any
) -> tuple[list[EmotionEvent], Engine]:
    """Run to the end of the media; returns the events (from the async iterator) and the engine."""

    async def go() -> tuple[list[EmotionEvent], Engine]:
        eng = Engine(cfg, sources, extractors=ex, fusion=fusion, backend=backend, **kw)
        events: list[EmotionEvent] = []
        async with eng:
            async for ev in eng.events():
                events.append(ev)
        return events, eng

    return asyncio.run(asyncio.wait_for(go(), timeout=240))
