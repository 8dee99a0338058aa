from __future__ import annotations

import pytest

from models.encoders.asr import ASRConfig, WhisperASR, offline_whisper_path
from models.encoders.audio import load_audio
from tests.encoders.media import clip


def test_offline_tiny_en_transcribes_the_ang_clip(extractors):
    asr = extractors.asr
    audio = load_audio(clip("ANG"))
    r = asr.transcribe(audio)
    assert "jacket" in r.text.lower()
    assert r.language == "en"
    assert abs(r.duration - len(audio) / 16000) < 1e-6
    assert r.options["model"] == "offline"
    # Word timestamps: ordered, inside the clip, and the words spell the text.
    assert len(r.words) >= 3
    assert all(0.0 <= w.start <= w.end <= r.duration + 0.1 for w in r.words)
    assert all(a.start <= b.start for a, b in zip(r.words, r.words[1:], strict=False))
    assert "".join(w.text for w in r.words).strip() == r.text
    assert any("jacket" in w.text.lower() for w in r.words)


def test_too_short_audio_gives_empty_result(extractors):
    import numpy as np

    r = extractors.asr.transcribe(np.zeros(800, np.float32))
    assert r.text == "" and r.words == []


def test_config_validation_and_offline_path():
    assert (offline_whisper_path() / "model.bin").is_file()
    with pytest.raises(ValueError, match="compute_type"):
        ASRConfig(compute_type="int4")
    with pytest.raises(ValueError, match="device"):
        ASRConfig(device="tpu")


def test_missing_size_without_download_says_how_to_get_it():
    with pytest.raises(RuntimeError, match="allow_download"):
        WhisperASR(ASRConfig(model="large-v3-nonexistent-size"))
