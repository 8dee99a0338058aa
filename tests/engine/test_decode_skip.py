"""No decode without new speech: after a sentence, the windows that hear only its trailing silence get
no recognition pass, and the words come out the same as when every window is decoded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.wer import wer
from engine.sources.file_replay import FileReplaySource
from models.encoders.audio import load_audio
from tests.encoders.media import clip, write_clip
from tests.engine.conftest import config, run_engine


def sentence_then_silence(tmp_path: Path) -> Path:
    """A real CREMA-D sentence, 4 s of room-level noise after it, then the sentence again."""
    speech = load_audio(clip("ANG"))
    rng = np.random.default_rng(0)
    pause = (rng.standard_normal(4 * 16000) * 1e-4).astype(np.float32)
    return write_clip(tmp_path / "pause.mkv", None, audio=np.concatenate([speech, pause, speech]))


def run(path: Path, extractors: Any, fusion: Any, backend: Any, new_speech_only: bool) -> list[Any]:
    cfg = config(window_s=4.0)
    cfg.asr.new_speech_only = new_speech_only
    events, _ = run_engine(cfg, [FileReplaySource(path, fast=True, video=False)], extractors, fusion, backend)
    return events


def test_windows_without_new_speech_are_not_decoded(
    tmp_path: Path, extractors: Any, fusion: Any, backend: Any
) -> None:
    path = sentence_then_silence(tmp_path)
    every = run(path, extractors, fusion, backend, new_speech_only=False)
    skip = run(path, extractors, fusion, backend, new_speech_only=True)
    assert [e.t_end for e in skip] == [e.t_end for e in every]  # the same windows, gapless
    states = [e.asr["state"] for e in skip]
    assert "no new speech" in states and "no new speech" not in [e.asr["state"] for e in every]
    passes = sum("asr" in e.latency_ms for e in skip)
    assert passes < sum("asr" in e.latency_ms for e in every)
    # A skipped window decodes nothing and costs no decoder time.
    assert all("asr" not in e.latency_ms for e in skip if e.asr["state"] == "no new speech")
    # The sentence's words, both times, each committed once. Decoding every window of the pause can
    # only add words (Whisper reads words into near-silence), never the sentence's own.
    words = [w.text.lower().strip(".,!?") for e in skip for w in e.new_words]
    heard = [w.text.lower().strip(".,!?") for e in every for w in e.new_words]
    assert words.count("jacket") == 2 and heard.count("jacket") == 2
    ref = "don't forget a jacket don't forget a jacket"
    assert wer(ref, " ".join(words)) <= wer(ref, " ".join(heard))
    # The second sentence is decoded again: new speech after the pause gets its passes.
    first_skip = states.index("no new speech")
    assert "decoded" in states[first_skip:]
