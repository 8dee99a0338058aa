"""The engine end to end on real CREMA-D media: replayed with --fast, real extractors, real ASR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.frames import EmotionEvent, VideoFrame
from engine.sinks import CallbackSink, JSONLSink
from engine.sources import FileReplaySource
from models.encoders.audio import load_audio
from tests.engine.conftest import config, run_engine
from tests.engine.media import ANG, ANG_WAV, decode_video, write_media

BLACK_SPAN = (0.5, 1.5)


def assert_gapless(events: list[EmotionEvent]) -> None:
    assert [e.seq for e in events] == list(range(len(events)))
    assert all(b.t_end >= a.t_end for a, b in zip(events, events[1:], strict=False))
    assert events[-1].final


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    frames = decode_video(ANG)
    audio = load_audio(ANG)
    black = [(t, np.zeros_like(x) if BLACK_SPAN[0] <= t < BLACK_SPAN[1] else x) for t, x in frames]
    bad = d / "garbage.mp4"
    bad.write_bytes(b"\x00\x01not a media file" * 500)
    data = ANG.read_bytes()
    trunc = d / "truncated.flv"
    trunc.write_bytes(data[: len(data) // 2])
    return {
        "stripped": write_media(d / "video_only.mkv", frames, None),
        "blackout": write_media(d / "blackout.mkv", black, audio),
        "garbage": bad,
        "truncated": trunc,
    }


def test_full_clip_all_present_and_transcript(
    extractors: Any, fusion: Any, backend: Any, tmp_path: Path
) -> None:
    seen: list[int] = []
    jsonl = tmp_path / "events.jsonl"
    cfg = config()
    events, eng = run_engine(
        cfg,
        [FileReplaySource(ANG, fast=True)],
        extractors,
        fusion,
        backend,
        sinks=[CallbackSink(lambda e: seen.append(e.seq)), JSONLSink(jsonl)],
    )
    assert len(events) == 3  # windows ending at 1 s, 2 s and the clip's end (2.27 s)
    assert_gapless(events)
    assert seen == [e.seq for e in events]
    for e in events:
        assert e.modalities["audio"].state == "present", e.modalities["audio"]
        assert e.modalities["video"].state == "present", e.modalities["video"]
        assert e.model == fusion.identity and e.trained and e.model.startswith("cmarr-offline-v3:")
        assert {"face", "speech", "text"} <= set(e.experts)  # every expert of a usable modality reads too
        assert e.probs is not None and abs(sum(e.probs.values()) - 1) < 1e-5
        assert e.label == max(e.probs, key=e.probs.get)
        assert e.face is not None and e.face.score > 0.8
        assert {"fusion", "audio_features", "video_features", "face", "vad"} <= set(e.latency_ms)
        assert e.e2e_latency_ms > 0
    last = events[-1]
    assert all(h.state == "present" for h in last.modalities.values()), last.modalities
    assert last.condition == "tav"
    assert "jacket" in last.transcript.lower()
    assert all(w.committed for w in last.words) and last.words[0].start < last.words[-1].end <= 2.4
    # The pretrained face expert reads this angry clip as angry.
    assert last.experts["face"].label == "ang"
    assert abs(sum(last.experts["face"].probs.values()) - 1) < 1e-5
    lines = jsonl.read_text().splitlines()
    assert [EmotionEvent.from_dict(__import__("json").loads(x)).seq for x in lines] == seen
    assert not eng.errors


def test_audio_stripped(extractors: Any, fusion: Any, backend: Any, media: dict[str, Path]) -> None:
    events, _ = run_engine(
        config(), [FileReplaySource(media["stripped"], fast=True)], extractors, fusion, backend
    )
    assert len(events) >= 2
    assert_gapless(events)
    for e in events:
        assert e.modalities["video"].state == "present"
        for m in ("audio", "text"):
            assert e.modalities[m].state == "reconstructed", (m, e.modalities[m])
        assert "no audio track" in e.modalities["audio"].reason
        assert e.condition == "v" and e.probs is not None


def test_video_blacked_out_span(extractors: Any, fusion: Any, backend: Any, media: dict[str, Path]) -> None:
    cfg = config(window_s=0.5, hop_s=0.5, asr=False)
    events, _ = run_engine(cfg, [FileReplaySource(media["blackout"], fast=True)], extractors, fusion, backend)
    assert_gapless(events)
    assert [e.t_end for e in events[:4]] == [0.5, 1.0, 1.5, 2.0]
    for e in events:
        inside = e.t_start >= BLACK_SPAN[0] - 1e-6 and e.t_end <= BLACK_SPAN[1] + 1e-6
        v = e.modalities["video"]
        if inside:
            assert v.state == "reconstructed" and v.reason.startswith("dark"), (e.t_start, v)
        else:
            assert v.state == "present", (e.t_start, v)
        if inside:  # the blackout leaves the (speech-filled) audio of those windows alone
            assert e.modalities["audio"].state == "present", e.modalities["audio"]
    assert sum(e.modalities["video"].state != "present" for e in events) == 2


class ExplodingReplay(FileReplaySource):
    """A real replay whose device dies mid-stream with an exception."""

    def __init__(self, path: Path, fail_at: float, **kw: Any) -> None:
        super().__init__(path, **kw)
        self.fail_at = fail_at

    async def run(self, emit, clock):  # noqa: ANN001
        async def wrapped(frame):  # noqa: ANN001
            if isinstance(frame, VideoFrame) and frame.t >= self.fail_at:
                raise OSError("camera driver crashed")
            await emit(frame)

        await super().run(wrapped, clock)


def test_source_raises_mid_stream(extractors: Any, fusion: Any, backend: Any) -> None:
    cfg = config(window_s=0.5, hop_s=0.5, asr=False)
    sources = [
        FileReplaySource(ANG_WAV, fast=True, video=False, name="mic"),
        ExplodingReplay(ANG, 1.0, fast=True, audio=False, name="cam"),
    ]
    events, eng = run_engine(cfg, sources, extractors, fusion, backend)
    assert_gapless(events)
    assert events[-1].t_end == pytest.approx(2.27, abs=0.01)  # audio went on to the end
    assert events[-1].modalities["audio"].stats["coverage"] == pytest.approx(1.0, abs=0.01)
    assert sum(e.probs is not None and e.t_end > 1.0 for e in events) >= 1  # audio alone was fused
    for e in events:
        v = e.modalities["video"]
        if e.t_end <= 1.0:
            assert v.state == "present", (e.t_end, v)
        else:
            # reconstructed while the audio carries speech; missing once nothing is left to fuse
            assert v.state == ("reconstructed" if e.probs else "missing"), (e.t_end, v)
            assert "camera driver crashed" in v.reason, v
        assert e.modalities["text"].reason == "speech recognition disabled"
    assert any("camera driver crashed" in x for x in eng.errors)
    assert any("camera driver crashed" in x for e in events for x in e.errors)


class Proxy:
    """The real extractors with some attributes replaced (fault injection)."""

    def __init__(self, real: Any, **over: Any) -> None:
        self._real, self._over = real, over

    def __getattr__(self, name: str) -> Any:
        return self._over[name] if name in self._over else getattr(self._real, name)


def test_nan_features(extractors: Any, fusion: Any, backend: Any) -> None:
    def nan_speech(pcm: np.ndarray) -> np.ndarray:
        x = extractors.speech(pcm)
        x[len(x) // 2] = np.nan
        return x

    cfg = config(window_s=1.0, hop_s=1.0, asr=False)
    events, _ = run_engine(
        cfg, [FileReplaySource(ANG, fast=True)], Proxy(extractors, speech=nan_speech), fusion, backend
    )
    assert_gapless(events)
    for e in events:
        a = e.modalities["audio"]
        assert a.state == "reconstructed" and "non-finite" in a.reason, a
        assert e.modalities["video"].state == "present"
        assert e.probs is not None and all(np.isfinite(list(e.probs.values())))
        assert e.condition == "v"


class FailingASR:
    """A recogniser whose every pass raises (it shares no encoder with the speech features)."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, audio: np.ndarray) -> Any:
        self.calls += 1
        raise RuntimeError("recogniser crashed")

    def decode(self, *a: Any, **k: Any) -> Any:
        self.calls += 1
        raise RuntimeError("recogniser crashed")


def test_asr_exception(extractors: Any, fusion: Any, backend: Any) -> None:
    asr = FailingASR()
    cfg = config(window_s=1.0, hop_s=1.0)
    events, _ = run_engine(
        cfg, [FileReplaySource(ANG, fast=True)], Proxy(extractors, asr=asr), fusion, backend
    )
    assert asr.calls >= 1
    assert_gapless(events)
    assert len(events) == 3
    for e in events:
        assert e.modalities["audio"].state == "present"
        assert e.modalities["video"].state == "present"
        t = e.modalities["text"]
        assert t.state == "reconstructed" and t.reason.startswith("asr error"), (t, e.asr)
    assert any("recogniser crashed" in x for e in events for x in e.errors)


def test_corrupt_files(extractors: Any, fusion: Any, backend: Any, media: dict[str, Path]) -> None:
    cfg = config(window_s=0.5, hop_s=0.5, asr=False)
    events, _ = run_engine(cfg, [FileReplaySource(media["garbage"], fast=True)], extractors, fusion, backend)
    assert len(events) == 1 and events[0].probs is None  # one event says why nothing could be fused
    assert all(h.state == "missing" for h in events[0].modalities.values())
    assert "cannot open" in events[0].modalities["audio"].reason
    events, _ = run_engine(
        cfg, [FileReplaySource(media["truncated"], fast=True)], extractors, fusion, backend
    )
    assert_gapless(events)
    assert events[0].modalities["video"].state == "present"  # what decoded before the cut is used
    assert events[-1].t_end < 2.0
