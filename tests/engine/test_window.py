"""Window schedule, timelines, frame channel and the event schema."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from engine.config import SHIPPED_CHECKPOINT, EngineConfig, WindowConfig, load_engine_config
from engine.core.channel import FrameChannel
from engine.core.timeline import AudioTimeline, WindowSchedule
from engine.frames import (
    AudioFrame,
    EmotionEvent,
    EndFrame,
    ModalityHealth,
    SourceStatusFrame,
    VideoFrame,
    Word,
)


def test_schedule_and_final() -> None:
    s = WindowSchedule(WindowConfig(window_s=3.0, hop_s=1.0, min_final_s=0.25))
    specs = [s.take() for _ in range(4)]
    assert [(w.t_start, w.t_end) for w in specs] == [(0.0, 1.0), (0.0, 2.0), (0.0, 3.0), (1.0, 4.0)]
    assert s.final(4.1) is None and s.is_last(4.1)
    f = s.final(4.6)
    assert f is not None and f.final and (f.t_start, f.t_end) == pytest.approx((1.6, 4.6))


def test_audio_timeline_slice_coverage_and_trim() -> None:
    tl = AudioTimeline()
    tl.append(0.0, np.ones(8000, np.float32))  # 0.0-0.5 s
    tl.append(1.0, np.full(8000, 2.0, np.float32))  # 1.0-1.5 s (a 0.5 s dropout before it)
    pcm, cov = tl.slice(0.25, 1.25)
    assert len(pcm) == 8000 and cov == pytest.approx(0.5)
    assert pcm[:4000].max() == 1.0 and pcm[4000:].min() == 2.0
    tl.trim(0.6)
    assert len(tl.chunks) == 1 and tl.slice(0.0, 2.0)[1] == pytest.approx(0.25)


def test_channel_latest_and_lossless() -> None:
    async def go() -> None:
        img = np.zeros((2, 2, 3), np.uint8)
        ch = FrameChannel(4, lossless=False, policy="latest")
        for i in range(5):
            await ch.put(VideoFrame(img, i / 30))
        await ch.put(SourceStatusFrame("video", False, "lost", 0.2))
        await ch.put(EndFrame("x"))
        got = [await ch.get() for _ in range(3)]
        assert isinstance(got[0], VideoFrame) and got[0].t == pytest.approx(4 / 30)  # only the latest kept
        assert isinstance(got[1], SourceStatusFrame) and isinstance(got[2], EndFrame)  # system frames kept
        assert ch.dropped_frames == 4
        audio = FrameChannel(2, lossless=False, policy="drop_new")
        for i in range(3):
            await audio.put(AudioFrame(np.zeros(160, np.float32), 16000, i * 0.01))
        assert audio.dropped_samples == 160 and audio.qsize() == 2  # dropped AND counted
        lossless = FrameChannel(1, lossless=True)
        await lossless.put(VideoFrame(img, 0.0))
        blocked = asyncio.ensure_future(lossless.put(VideoFrame(img, 0.1)))
        await asyncio.sleep(0.01)
        assert not blocked.done()  # backpressure: the producer waits
        await lossless.get()
        await asyncio.wait_for(blocked, 1.0)
        assert lossless.dropped_frames == 0

    asyncio.run(go())


def test_event_json_roundtrip() -> None:
    ev = EmotionEvent(
        3,
        "s",
        0.0,
        1.0,
        123.0,
        {"ang": 0.5, "hap": 0.5},
        "ang",
        "ta",
        {
            "text": ModalityHealth("present"),
            "audio": ModalityHealth("present"),
            "video": ModalityHealth("reconstructed", "no face in 90% of frames", {"face_ratio": 0.1}),
        },
        "don't forget",
        words=[Word("don't", 0.1, 0.3)],
        latency_ms={"fusion": float("nan")},
    )
    d = json.loads(ev.to_json())
    assert d["latency_ms"]["fusion"] is None  # NaN is not JSON
    back = EmotionEvent.from_dict(d)
    assert back.modalities["video"].reason == "no face in 90% of frames" and back.words[0].text == "don't"


def test_config_yaml_and_validation() -> None:
    cfg = load_engine_config("configs/engine/default.yaml", ["window.hop_s=0.5", "backend.name=torch"])
    assert cfg.window.hop_s == 0.5 and cfg.backend.name == "torch" and cfg.checkpoint == SHIPPED_CHECKPOINT
    assert EngineConfig().checkpoint == SHIPPED_CHECKPOINT  # the shipped model unless asked otherwise
    assert load_engine_config(None, ["checkpoint=none"]).checkpoint is None
    with pytest.raises(ValueError, match="hop_s"):
        WindowConfig(window_s=1.0, hop_s=2.0)
    with pytest.raises(ValueError, match="backend name"):
        load_engine_config(None, ["backend.name=tensorflow"])
    with pytest.raises(ValueError, match="unknown key"):
        load_engine_config(None, ["windw.hop_s=1"])
    with pytest.raises(ValueError, match="max_lead_s"):
        load_engine_config(None, ["queues.max_lead_s=0.5"])
    with pytest.raises(ValueError, match="agreement"):
        load_engine_config(None, ["asr.agreement=3"])
    with pytest.raises(ValueError, match="30 s"):
        load_engine_config(None, ["window.window_s=40", "window.hop_s=1"])
    assert EngineConfig().ema_alpha == 0.0


def test_console_views_render_states() -> None:
    from rich.console import Console

    from engine.frames import ExpertReading, FaceInfo
    from engine.sinks.console import RichSink, plain_line

    mods = {
        "text": ModalityHealth("present"),
        "audio": ModalityHealth("reconstructed", "silence: -70 dBFS"),
        "video": ModalityHealth("missing", "no frames: camera 0 lost"),
    }
    ev = EmotionEvent(
        7,
        "s",
        1.0,
        4.0,
        0.0,
        {"ang": 0.1, "hap": 0.7, "neu": 0.1, "sad": 0.1},
        "hap",
        "t",
        mods,
        "hello there",
        face=FaceInfo((1.0, 2.0, 30.0, 40.0), 0.9),
        experts={"face": ExpertReading("m", {"ang": 0.0, "hap": 1.0, "neu": 0.0, "sad": 0.0}, "hap")},
        latency_ms={"fusion": 2.0},
        e2e_latency_ms=120.0,
    )
    line = plain_line(ev)
    assert "#0007" in line and "t+ a~ vx" in line and "hap=0.70" in line and '"hello there"' in line
    sink = RichSink()
    sink.console = Console(record=True, width=120)
    sink.console.print(sink._render(ev))
    text = sink.console.export_text()
    for s in (
        "audio reconstructed (silence: -70 dBFS)",
        "video missing",
        "hello there",
        "UNTRAINED",
        "e2e=120",
    ):
        assert s in text, s
