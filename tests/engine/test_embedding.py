"""The embedding API (push source, audio only), the checkpoint guard, and the run_live.py CLI."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import run_live
from engine import Engine
from engine.config import EngineConfig
from engine.sources import PushSource
from engine.stages.fusion import load_fusion_model
from engine.tools import live_command
from models.encoders.audio import load_audio
from tests.engine.conftest import config
from tests.engine.media import ANG, ANG_WAV
from tests.engine.test_replay import Proxy


def test_push_audio_only_from_a_thread(extractors: Any, fusion: Any, backend: Any) -> None:
    """Call-center style: another thread pushes 8 kHz telephone audio with timestamps."""
    pcm = load_audio(ANG_WAV, sr=8000)

    def producer(eng: Engine) -> None:
        for i in range(0, len(pcm), 160):  # 20 ms packets
            eng.push_audio(pcm[i : i + 160], 8000, i / 8000)
        eng.end_of_stream()

    async def go() -> list:
        eng = Engine(
            config(), sources=[PushSource(video=False)], extractors=extractors, fusion=fusion, backend=backend
        )
        async with eng:
            th = threading.Thread(target=producer, args=(eng,))
            th.start()
            events = [ev async for ev in eng.events()]
            th.join()
        with pytest.raises(RuntimeError, match="without video"):
            eng.push_frame(np.zeros((2, 2, 3), np.uint8), 0.0)
        return events

    events = asyncio.run(asyncio.wait_for(go(), 180))
    assert [e.seq for e in events] == list(range(len(events))) and len(events) == 3
    for e in events:
        assert (
            e.modalities["video"].state == "reconstructed"
            and e.modalities["video"].reason == "no frames: no video source"
        )
        assert e.modalities["audio"].state == "present"
        assert e.face is None and "face" not in e.experts
        assert e.dropped == {"audio_samples": 0, "video_frames": 0}
    assert "jacket" in events[-1].transcript.lower() and events[-1].condition == "ta"


def test_trainer_written_checkpoint_loads_with_its_statistics_and_temperature(
    extractors: Any, trained_checkpoint: Path
) -> None:
    """The engine reads what the trainer wrote: identity, class names, per-modality normalisation and the
    calibration temperature (which changes the probabilities, never the argmax)."""
    from engine.stages.fusion import FusionStage
    from models.checkpoint import load_checkpoint
    from models.fusion_meta import FusionMeta

    desc = extractors.describe()
    fm = load_fusion_model(EngineConfig(checkpoint=str(trained_checkpoint)), desc, extractors.dims)
    ck = load_checkpoint(trained_checkpoint)
    meta = FusionMeta.from_extra(ck.extra)
    assert fm.trained and fm.identity == ck.identity and fm.class_names == meta.class_names
    assert fm.temperature == meta.temperature != 1.0
    mean, std = (np.asarray(meta.normalization["audio"][k], np.float32) for k in ("mean", "std"))
    x = np.random.default_rng(0).normal(size=(5, extractors.dims["audio"])).astype(np.float32)
    want = (x - mean) / np.maximum(std, 1e-6)
    assert np.allclose(FusionStage(fm, None).normalise("audio", x), want, atol=1e-5)

    class Logits:  # the backend's contract: logits in, FusionStage applies the temperature
        def infer(self, inputs: Any) -> Any:
            from engine.backends import FusionResult, softmax

            z = np.array([[2.0, 0.5, -1.0, 0.0]], np.float32)
            return FusionResult(z, softmax(z))

    probs = FusionStage(fm, Logits())({"audio": x}, np.array([0, 1, 0], np.float32))
    expect = np.exp(np.array([2.0, 0.5, -1.0, 0.0]) / fm.temperature)
    assert np.allclose(probs, expect / expect.sum(), atol=1e-5)


def test_run_live_cli(
    extractors: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as e:
        run_live.parse_args([])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        run_live.parse_args(["--help"])
    assert e.value.code == 0
    helptext = capsys.readouterr().out
    for flag in (
        "--camera",
        "--mic",
        "--video",
        "--audio",
        "--fast",
        "--no-display",
        "--jsonl",
        "--backend",
        "--device",
        "--config",
        "--max-seconds",
        "--demo",
    ):
        assert flag in helptext
    args = run_live.parse_args(["--camera", "0", "--video", "a.mp4", "--audio", "b.wav", "--fast"])
    kinds = [(type(s).__name__, s.modalities) for s in live_command.build_sources(args)]
    assert kinds == [
        ("CameraSource", ("video",)),
        ("MicrophoneSource", ("audio",)),
        ("FileReplaySource", ("video",)),
        ("FileReplaySource", ("audio",)),
    ]
    demo = run_live.parse_args(["--demo"])
    assert Path(demo.video).name == "1001_DFA_ANG_XX.flv" and demo.jsonl.endswith("demo_events.jsonl")

    # the engine closes extractors it loaded itself; these are shared with other tests
    monkeypatch.setattr(
        "engine.core.loading.load_extractors", lambda cfg: Proxy(extractors, close=lambda: None)
    )
    out = tmp_path / "ev.jsonl"
    rc = run_live.main(
        [
            "--video",
            str(ANG),
            "--fast",
            "--no-display",
            "--jsonl",
            str(out),
            "--backend",
            "torch",
            "--max-seconds",
            "1.5",
            "--set",
            "asr.enabled=false",
            "--set",
            "window.hop_s=0.5",
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "UNTRAINED MODEL" not in err  # the shipped model is the default
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [d["seq"] for d in lines] == list(range(len(lines))) and len(lines) == 3
    assert lines[-1]["t_end"] == pytest.approx(1.5, abs=0.05)
    assert lines[0]["trained"] is True and lines[0]["model"].startswith("cmarr-offline-v3:")
    assert lines[0]["modalities"]["video"]["state"] == "present"
    # Only a user who asks for no checkpoint gets the untrained model, and the banner says so.
    quick = ["--fast", "--no-display", "--jsonl", str(out), "--overwrite", "--backend", "torch"]
    quick += ["--max-seconds", "1.0"]
    rc = run_live.main(["--video", str(ANG), *quick, "--set", "asr.enabled=false", "--checkpoint", "none"])
    assert rc == 0 and "UNTRAINED MODEL" in capsys.readouterr().err
    assert all(json.loads(x)["model"] == "untrained" for x in out.read_text().splitlines())
    # A checkpoint that is not there stops the program at start with one line, exit 2.
    rc = run_live.main(["--video", str(ANG), "--no-display", "--checkpoint", str(tmp_path / "no.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("run_live.py: error: checkpoint not found")
    assert "make train-offline" in err[-1]


def test_live_camera_and_microphone_through_mocks(extractors: Any, fusion: Any, backend: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The live path end to end: mocked webcam (dies after 1 s, never comes back) + mocked microphone."""
    import sys

    from engine.sources import CameraSource, MicrophoneSource
    from tests.mocks import cv2_capture
    from tests.mocks.sounddevice import FakeSoundDevice

    rgb = cv2_capture.decode_rgb(ANG, limit=30)
    caps: list[Any] = []

    def factory(index: Any) -> cv2_capture.LoopingVideoCapture:
        caps.append(cv2_capture.LoopingVideoCapture(rgb, opens=not caps, fail_after=30, fps=30))
        return caps[-1]

    cv2_capture.install(monkeypatch, factory)
    pcm48 = load_audio(ANG_WAV, sr=48000)
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice(np.stack([pcm48, pcm48], 1), 48000))
    sources = [CameraSource(0, reopen_s=0.2, max_failures=3, max_seconds=2.5),
               MicrophoneSource(None, block_s=0.032, max_seconds=2.5)]
    cfg = config(window_s=1.0, hop_s=0.5, asr=False)

    async def go() -> list:
        eng = Engine(cfg, sources, extractors=extractors, fusion=fusion, backend=backend)
        async with eng:
            return [ev async for ev in eng.events()]

    events = asyncio.run(asyncio.wait_for(go(), 120))
    assert [e.seq for e in events] == list(range(len(events))) and len(events) >= 4
    assert [e.t_end for e in events[:4]] == [0.5, 1.0, 1.5, 2.0]
    video = [e.modalities["video"] for e in events]
    assert video[0].state == "present" and video[0].stats["face_ratio"] > 0.9
    lost = [v for e, v in zip(events, video, strict=True) if e.t_start >= 1.3]
    assert lost and all(v.state != "present" and "camera 0" in v.reason for v in lost), lost
    assert any(e.modalities["audio"].state == "present" for e in events)  # the spoken part of the clip
    assert all(isinstance(e.dropped["video_frames"], int) for e in events)
    assert all(0 < e.e2e_latency_ms < 30_000 for e in events)


def test_freed_heap_is_returned_and_the_trimmer_stops_on_cancel() -> None:
    from engine.core.memory import TRIM_AVAILABLE, malloc_trim, trim_every

    if not TRIM_AVAILABLE:
        pytest.skip("malloc_trim is glibc's; this C library has none")
    blocks = [bytes(1000) + bytes([i % 256]) for i in range(200_000)]  # ~200 MB of small heap chunks
    del blocks
    assert malloc_trim() is True  # glibc had free pages to hand back

    async def run() -> None:
        task = asyncio.create_task(trim_every(0.01))
        await asyncio.sleep(0.05)
        assert not task.done()  # it keeps running between trims
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
