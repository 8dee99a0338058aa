"""Bad input: what the user asks for at start fails fast with one clear line and exit code 2; unusual but
valid media decodes correctly. Every file here is made from the bundled clips or written by PyAV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import run_live
from engine.sources.file_replay import FileReplaySource, MediaFileError
from tests.engine.conftest import config, run_engine
from tests.engine.media import ANG_WAV

STREAMS = Path(__file__).resolve().parents[1] / "data" / "streams"


def cli_error(capsys: Any, *argv: str) -> str:
    """Run run_live.py; it must exit 2 with exactly one line on stderr, which is returned."""
    rc = run_live.main([*argv, "--fast", "--no-display"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("run_live.py: error: "), err
    return err[0]


def test_files_asked_for_at_start_fail_fast(tmp_path: Path, capsys: Any) -> None:
    assert "no such file" in cli_error(capsys, "--audio", str(tmp_path / "missing.wav"))
    notes = tmp_path / "notes.txt"
    notes.write_text("these are meeting notes, not media\n")
    assert "not a media file" in cli_error(capsys, "--video", str(notes))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert "empty (0 bytes)" in cli_error(capsys, "--audio", str(empty))
    assert "is a folder" in cli_error(capsys, "--video", str(tmp_path))
    # An mp4 cut in half loses its index (written at the end): nothing can be decoded.
    data = (STREAMS / "cremad_1001_x5.mp4").read_bytes()
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(data[: len(data) // 2])
    line = cli_error(capsys, "--video", str(cut))
    assert "truncated.mp4" in line


def test_an_unsupported_codec_is_named(tmp_path: Path, capsys: Any) -> None:
    """A WAV whose format tag no decoder knows (0x9999): the container opens, the codec cannot decode."""
    import struct

    data = bytearray(ANG_WAV.read_bytes())
    i = data.find(b"fmt ")
    assert struct.unpack("<H", data[i + 8 : i + 10]) == (1,)  # PCM
    data[i + 8 : i + 10] = struct.pack("<H", 0x9999)
    odd = tmp_path / "odd_codec.wav"
    odd.write_bytes(bytes(data))
    line = cli_error(capsys, "--audio", str(odd))
    assert "odd_codec.wav: unsupported codec (audio: no decoder" in line, line


def test_config_and_checkpoint_errors_are_one_line(tmp_path: Path, capsys: Any) -> None:
    wav = str(ANG_WAV)
    assert "hop_s" in cli_error(capsys, "--audio", wav, "--set", "window.hop_s=-1")
    assert "unknown key" in cli_error(capsys, "--audio", wav, "--set", "no.such.key=1")
    line = cli_error(capsys, "--audio", wav, "--checkpoint", str(tmp_path / "none.safetensors"))
    assert "checkpoint not found" in line and "--checkpoint" in line
    trt = ["--set", "backend.name=tensorrt", "--set", "backend.precision=int8"]
    assert "needs backend.calibration" in cli_error(capsys, "--audio", wav, *trt)
    line = cli_error(capsys, "--audio", wav, *trt, "--set", f"backend.calibration={tmp_path / 'c.npz'}")
    assert "c.npz does not exist; record it with python -m engine.calibrate" in line


def test_a_backend_this_machine_cannot_run_fails_before_models_load(capsys: Any) -> None:
    """TensorRT or a CUDA device asked for where there is none: one line, exit 2, nothing loaded."""
    import importlib.util

    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: these backends can run")
    wav = str(ANG_WAV)
    if importlib.util.find_spec("tensorrt") is None:
        assert "needs TensorRT" in cli_error(capsys, "--audio", wav, "--set", "backend.name=tensorrt")
    for name in ("onnxruntime", "torch"):
        overrides = ["--set", f"backend.name={name}", "--set", "backend.device=cuda"]
        line = cli_error(capsys, "--audio", wav, *overrides)
        assert "needs" in line and "cuda" in line.lower(), line


def test_a_file_without_the_wanted_track_fails(tmp_path: Path) -> None:
    import av

    path = tmp_path / "video_only.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    with pytest.raises(MediaFileError, match="no audio track"):
        FileReplaySource(path, audio=True, video=False).check()
    FileReplaySource(path, audio=True, video=True).check()  # the video track is enough


def _write_video(path: Path, w: int, h: int, frames: int, fps: int = 10) -> None:
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for _ in range(frames):
            img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


@pytest.mark.parametrize("kind", ["8k_stereo", "float32"])
def test_unusual_audio_decodes(kind: str, tmp_path: Path, extractors: Any, fusion: Any, backend: Any) -> None:
    x, sr = sf.read(str(ANG_WAV), dtype="float32")
    if kind == "8k_stereo":
        from scipy.signal import resample_poly

        mono = resample_poly(x, 1, 2).astype(np.float32)
        path, data, rate, sub = tmp_path / "a.wav", np.stack([mono, 0.5 * mono], 1), 8000, "PCM_16"
    else:
        path, data, rate, sub = tmp_path / "a.wav", x, sr, "FLOAT"
    sf.write(str(path), data, rate, subtype=sub)
    FileReplaySource(path, video=False).check()
    events, _ = run_engine(
        config(window_s=4.0, hop_s=1.0),
        [FileReplaySource(path, fast=True, video=False)],
        extractors,
        fusion,
        backend,
    )
    assert events and all(e.modalities["audio"].state == "present" for e in events)
    assert any("jacket" in w.text.lower() for e in events for w in e.new_words)


@pytest.mark.parametrize(("w", "h"), [(1, 1), (3840, 2160)])
def test_tiny_and_4k_frames_decode(
    w: int, h: int, tmp_path: Path, extractors: Any, fusion: Any, backend: Any
) -> None:
    path = tmp_path / f"v{w}x{h}.mp4"
    _write_video(path, max(w, 2), max(h, 2), frames=12 if w > 100 else 20)
    FileReplaySource(path, audio=False).check()
    events, _ = run_engine(
        config(window_s=1.0, hop_s=1.0, asr=False),
        [FileReplaySource(path, fast=True, audio=False)],
        extractors,
        fusion,
        backend,
    )
    assert events and not any(e.errors for e in events)
    v = events[0].modalities["video"]
    assert v.state in ("missing", "reconstructed") and v.reason.startswith("no face"), v  # noise has no face
