"""Live sources that fail and come back, through the whole engine: a camera unplugged mid-stream and
plugged back in, a microphone muted for 5 s, a file corrupt half-way. For each: the engine keeps
running, the modality is marked within a window with the right reason, seq stays gapless, and the
stream recovers when the fault ends. (Hardware is faked at the OpenCV and sounddevice boundary.)"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine import EmotionEvent
from engine.sources import CameraSource, FileReplaySource, MicrophoneSource
from models.encoders.audio import load_audio
from tests.engine.conftest import config, run_engine
from tests.engine.media import ANG, ANG_WAV
from tests.mocks import cv2_capture
from tests.mocks.sounddevice import FakeSoundDevice

pytestmark = pytest.mark.timeout(300)
STREAMS = Path(__file__).resolve().parents[1] / "data" / "streams"


def gapless(events: list[EmotionEvent]) -> None:
    assert [e.seq for e in events] == list(range(len(events)))
    assert events[-1].final


def states(events: list[EmotionEvent], m: str) -> list[tuple[float, str, str]]:
    return [(round(e.t_end, 2), e.modalities[m].state, e.modalities[m].reason) for e in events]


def test_camera_unplugged_then_back(
    monkeypatch: pytest.MonkeyPatch, extractors: Any, fusion: Any, backend: Any
) -> None:
    rgb = cv2_capture.decode_rgb(ANG, limit=30)
    opened: list[Any] = []

    def factory(index: Any) -> cv2_capture.LoopingVideoCapture:
        # the first device delivers 1 s of frames, then every read fails (unplugged); the device opened
        # after the reopen delay works again (plugged back in)
        cap = cv2_capture.LoopingVideoCapture(rgb, fail_after=15 if not opened else None, fps=15)
        opened.append(cap)
        return cap

    cv2_capture.install(monkeypatch, factory)
    cam = CameraSource(0, reopen_s=1.5, max_failures=3, max_seconds=5.0)
    events, eng = run_engine(config(window_s=0.5, hop_s=0.5, asr=False), [cam], extractors, fusion, backend)
    gapless(events)
    video = states(events, "video")
    lost = [i for i, e in enumerate(events) if "camera 0 lost" in e.modalities["video"].reason]
    assert lost, video
    assert all(events[i].modalities["video"].state != "present" for i in lost)
    assert events[lost[0]].t_end <= 1.0 + 0.5 + 0.5, video  # marked within a window of the loss
    after = events[lost[-1] + 1 :]
    assert any(e.modalities["video"].state == "present" for e in after), video  # and back after replugging
    assert events[0].modalities["video"].state == "present", video
    assert len(opened) >= 2 and opened[0].released


def test_microphone_muted_for_5s_then_back(
    monkeypatch: pytest.MonkeyPatch, extractors: Any, fusion: Any, backend: Any
) -> None:
    speech = load_audio(ANG_WAV, sr=48000)
    mute = np.zeros(5 * 48000, np.float32)
    pcm = np.concatenate([speech, mute, speech])[:, None]  # 2.3 s speech, 5 s digital silence, speech
    fake = FakeSoundDevice(pcm, samplerate=48000)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    mic = MicrophoneSource(None, block_s=0.02, max_seconds=len(pcm) / 48000)
    cfg = config(window_s=1.0, hop_s=1.0, asr=False)
    events, _ = run_engine(cfg, [mic], extractors, fusion, backend)
    gapless(events)
    audio = states(events, "audio")
    s0, s1 = len(speech) / 48000, len(speech) / 48000 + 5.0  # the muted span
    inside = [e for e in events if e.t_end - 1.0 >= s0 + 0.05 and e.t_end <= s1]
    assert len(inside) >= 4, audio
    assert all(e.modalities["audio"].state != "present" for e in inside), audio
    assert all("silence" in e.modalities["audio"].reason for e in inside), audio
    before = [e for e in events if e.t_end <= s0 and e.t_end >= 1.0]
    after = [e for e in events if e.t_end - 1.0 >= s1 + 0.1]
    assert any(e.modalities["audio"].state == "present" for e in before), audio
    assert any(e.modalities["audio"].state == "present" for e in after), audio  # back when unmuted


def test_microphone_stalls_then_resumes(
    monkeypatch: pytest.MonkeyPatch, extractors: Any, fusion: Any, backend: Any
) -> None:
    """The driver stops calling back after 2 s while the stream still says it is active: the source
    reports the stall, closes and reopens the device, and audio comes back."""
    speech = load_audio(ANG_WAV, sr=48000)
    pcm = np.concatenate([speech] * 4)[:, None]
    fake = FakeSoundDevice(pcm, samplerate=48000, stall_after_s=2.0)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    mic = MicrophoneSource(None, block_s=0.02, stall_s=1.0, reopen_s=0.5, max_seconds=8.0)
    events, _ = run_engine(config(window_s=1.0, hop_s=1.0, asr=False), [mic], extractors, fusion, backend)
    gapless(events)
    audio = states(events, "audio")
    # The stall starts at 2.0 s: the window that ends next holds no audio, and is marked missing (the
    # source reports the stall itself after stall_s, by when the window has already closed).
    gone = [i for i, e in enumerate(events) if e.modalities["audio"].state != "present"]
    assert gone and events[gone[0]].t_end == pytest.approx(3.0), audio
    first = events[gone[0]].modalities["audio"].reason
    assert first.startswith("dropout: ") or "stalled" in first, audio  # no or too little audio
    assert all(e.modalities["audio"].state == "present" for e in events[: gone[0]]), audio
    assert any(e.modalities["audio"].state == "present" for e in events[gone[-1] + 1 :]), audio  # resumed
    assert events[gone[-1]].t_end <= 3.0 + 1.0 + 0.5 + 1.0, audio  # back within a window of the reopen
    assert len(fake.streams) >= 2 and not fake.streams[0].active  # the stalled stream was closed


def test_file_corrupt_half_way_recovers(tmp_path: Any, extractors: Any, fusion: Any, backend: Any) -> None:
    """3% of the bytes of the long A/V fixture overwritten at 15% (about 9.5 s in): the damaged span is
    reported with the decoder's error, and the rest of the file plays on."""
    src = STREAMS / "cremad_1001_x5.mp4"
    data = bytearray(src.read_bytes())
    s0, n = int(0.15 * len(data)), int(0.03 * len(data))
    data[s0 : s0 + n] = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    cfg = config(window_s=1.0, hop_s=1.0, asr=False)
    replay = FileReplaySource(bad, fast=True, max_seconds=16.0)
    events, _ = run_engine(cfg, [replay], extractors, fusion, backend)
    gapless(events)
    assert events[-1].t_end == pytest.approx(16.0, abs=0.1), states(events, "audio")  # not cut at the damage
    for m in ("audio", "video"):
        hit = [e for e in events if "decode error in damaged.mp4" in e.modalities[m].reason]
        assert hit and all(e.modalities[m].state != "present" for e in hit), states(events, m)
        assert 8.0 <= hit[0].t_end <= 12.0, states(events, m)
        after = [e for e in events if e.t_end >= hit[-1].t_end + 2.0]
        assert after and all(e.modalities[m].state == "present" for e in after), states(events, m)
