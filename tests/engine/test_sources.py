"""Sources on real media, with OpenCV and sounddevice mocked at their boundary (no hardware)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from engine.frames import AudioFrame, EndFrame, Frame, SourceStatusFrame, VideoFrame
from engine.sources import CameraSource, FileReplaySource, MediaClock, MicrophoneSource, PushSource
from models.encoders.audio import load_audio
from tests.engine.media import ANG, ANG_WAV
from tests.mocks import cv2_capture
from tests.mocks.sounddevice import FakeSoundDevice


def collect(source: Any, timeout: float = 30.0) -> list[Frame]:
    frames: list[Frame] = []

    async def emit(f: Frame) -> None:
        frames.append(f)

    async def go() -> None:
        await asyncio.wait_for(source.run(emit, MediaClock()), timeout)

    asyncio.run(go())
    return frames


def of(frames: list[Frame], kind: type) -> list[Any]:
    return [f for f in frames if isinstance(f, kind)]


def test_file_replay_flv_audio_and_video() -> None:
    frames = collect(FileReplaySource(ANG, fast=True))
    audio, video = of(frames, AudioFrame), of(frames, VideoFrame)
    assert len(video) == 67 and video[0].image.shape == (360, 480, 3)
    pcm = np.concatenate([a.pcm for a in audio])
    ref = load_audio(ANG)  # the extractor's one-shot decode: the stream must equal it
    assert len(pcm) == len(ref) and np.abs(pcm - ref).max() < 1e-5
    ts = [a.t for a in audio]
    assert ts == sorted(ts) and all(
        abs(b - (a.t + a.duration)) < 1e-6 for a, b in zip(audio, ts[1:], strict=False)
    )
    assert all(b.t > a.t for a, b in zip(video, video[1:], strict=False))
    assert isinstance(frames[-1], EndFrame) and frames[-1].t == pytest.approx(len(ref) / 16000, abs=1e-3)


def test_file_replay_any_rate_and_channels(tmp_path: Path) -> None:
    mono = load_audio(ANG_WAV)
    stereo44 = load_audio(ANG_WAV, sr=44100)
    path = tmp_path / "stereo44k.wav"
    sf.write(path, np.stack([stereo44, 0.5 * stereo44], axis=1), 44100)
    frames = collect(FileReplaySource(path, fast=True))
    status = of(frames, SourceStatusFrame)
    assert [(s.modality, s.ok, s.reason) for s in status] == [("video", False, "file has no video track")]
    pcm = np.concatenate([a.pcm for a in of(frames, AudioFrame)])
    assert all(a.sample_rate == 16000 for a in of(frames, AudioFrame))
    assert abs(len(pcm) - len(mono)) <= 2
    n = min(len(pcm), len(mono))
    # channel mean (0.75 x) of a 16k -> 44.1k -> 16k round trip
    assert np.corrcoef(pcm[:n], mono[:n])[0, 1] > 0.99 and np.std(pcm) == pytest.approx(
        0.75 * np.std(mono), rel=0.05
    )


def test_file_replay_paced_and_max_seconds() -> None:
    t0 = time.monotonic()
    frames = collect(FileReplaySource(ANG, fast=False, max_seconds=0.6))
    took = time.monotonic() - t0
    assert 0.5 < took < 5.0  # paced at media time, not as fast as possible
    assert max(f.t for f in of(frames, VideoFrame)) < 0.6 and isinstance(frames[-1], EndFrame)


def test_file_replay_missing_and_corrupt(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(b"garbage" * 100)
    for path in (bad, tmp_path / "does_not_exist.mp4"):
        frames = collect(FileReplaySource(path, fast=True))
        status = of(frames, SourceStatusFrame)
        assert {s.modality for s in status} == {"audio", "video"} and not any(s.ok for s in status)
        assert all("cannot open" in s.reason for s in status) and isinstance(frames[-1], EndFrame)


def test_camera_through_mocked_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = cv2_capture.decode_rgb(ANG, limit=5)
    opened: list[Any] = []

    def factory(index: Any) -> cv2_capture.LoopingVideoCapture:
        # first device reads 8 frames then dies; the reopened one works again
        cap = cv2_capture.LoopingVideoCapture(rgb, fail_after=8 if not opened else None, fps=100)
        opened.append(cap)
        return cap

    cv2_capture.install(monkeypatch, factory)
    cam = CameraSource(0, reopen_s=0.05, max_failures=3, max_seconds=0.6)
    frames = collect(cam)
    video, status = of(frames, VideoFrame), of(frames, SourceStatusFrame)
    assert len(opened) >= 2 and opened[0].released
    assert [s.ok for s in status][:3] == [True, False, True]
    assert "lost" in status[1].reason
    assert np.array_equal(video[0].image, rgb[0])  # BGR from OpenCV converted back to RGB
    assert all(b.t >= a.t for a, b in zip(video, video[1:], strict=False)) and len(video) > 10


def test_camera_that_never_opens(monkeypatch: pytest.MonkeyPatch) -> None:
    cv2_capture.install(monkeypatch, lambda i: cv2_capture.LoopingVideoCapture([], opens=False))
    frames = collect(CameraSource(3, reopen_s=0.05, max_seconds=0.3))
    status = of(frames, SourceStatusFrame)
    assert len(status) == 1 and not status[0].ok and "could not be opened" in status[0].reason
    assert not of(frames, VideoFrame) and isinstance(frames[-1], EndFrame)


def test_microphone_through_mocked_sounddevice(monkeypatch: pytest.MonkeyPatch) -> None:
    pcm48 = load_audio(ANG_WAV, sr=48000)
    fake = FakeSoundDevice(np.stack([pcm48, pcm48], 1), samplerate=48000, stop_after_s=0.5)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    mic = MicrophoneSource(None, block_s=0.02, stall_s=0.2, reopen_s=0.1, max_seconds=1.0)
    frames = collect(mic)
    audio, status = of(frames, AudioFrame), of(frames, SourceStatusFrame)
    got = sum(len(a.pcm) for a in audio)
    assert 0.4 * 16000 <= got <= 0.55 * 16000 and all(a.sample_rate == 16000 for a in audio)
    assert [s.ok for s in status] == [True, False] and "microphone stream" in status[1].reason
    assert fake.streams and not fake.streams[0].active  # closed after the device vanished
    assert mic.dropped_samples == 0


def test_microphone_without_portaudio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        sys.modules, "sounddevice", FakeSoundDevice(np.zeros((10, 1), np.float32), fail_open=True)
    )
    frames = collect(MicrophoneSource(None, reopen_s=0.1, max_seconds=0.3))
    status = of(frames, SourceStatusFrame)
    assert len(status) == 1 and "microphone unavailable" in status[0].reason
    assert isinstance(frames[-1], EndFrame)


def test_push_source_resamples_and_counts_drops() -> None:
    src = PushSource(video=True, queue_size=3)
    pcm = load_audio(ANG_WAV, sr=8000)[:8000]
    src.push_audio(pcm[:4000], 8000, 0.0)  # pushed before the engine runs: kept
    src.push_audio(np.stack([pcm[4000:], pcm[4000:]], 1), 8000)  # continues at 0.5 s, stereo
    src.push_frame(np.zeros((4, 4, 3), np.uint8), 0.1)
    src.push_frame(np.zeros((4, 4, 3), np.uint8), 0.2)  # the 4th media item: over the bound, dropped
    src.end()
    frames = collect(src)
    audio = of(frames, AudioFrame)
    # contiguous sample-exact timestamps although the streaming resampler holds samples back
    assert audio[0].t == 0.0 and all(
        abs(b.t - (a.t + a.duration)) < 1e-4 for a, b in zip(audio, audio[1:], strict=False)
    )
    # 1 s at 16 kHz in all: the resampler's tail (flushed at end()) did not fit the bound of 3 media
    # items and was dropped, and counted
    assert src.dropped_samples > 0
    assert sum(len(a.pcm) for a in audio) + src.dropped_samples in range(15990, 16010)
    assert len(of(frames, VideoFrame)) == 1 and src.dropped_frames == 1
    with pytest.raises(ValueError, match="H, W, 3"):
        src.push_frame(np.zeros((4, 4)), 0.0)
    with pytest.raises(RuntimeError, match="without video"):
        PushSource(video=False).push_frame(np.zeros((4, 4, 3), np.uint8), 0.0)
