from __future__ import annotations

import numpy as np
import pytest

from models.encoders.audio import load_audio
from models.encoders.speech import (
    LogMelConfig,
    LogMelExtractor,
    Wav2Vec2Config,
    Wav2Vec2Extractor,
    mel_filterbank,
)
from tests.encoders.media import clip


def test_logmel_shape_rate_and_utterance_normalisation():
    audio = load_audio(clip("SAD"))
    ex = LogMelExtractor()
    f = ex(audio)
    assert ex.frame_rate == 100.0 and ex.dim == 80
    assert f.shape == (1 + len(audio) // 160, 80)
    assert abs(len(f) / ex.frame_rate - len(audio) / 16000) < 0.011
    np.testing.assert_allclose(f.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(f.std(0), 1, atol=1e-3)


def test_logmel_puts_a_tone_in_the_right_band():
    sr = 16000
    tone = 0.3 * np.sin(2 * np.pi * 1000 * np.arange(sr) / sr).astype(np.float32)
    ex = LogMelExtractor(LogMelConfig(normalisation="none"))
    f = ex(tone)
    fb = mel_filterbank(80, 512, sr, 20, 7600)
    bin_1k = int(round(1000 * 512 / sr))
    assert int(np.argmax(f[50])) == int(np.argmax(fb[:, bin_1k]))


def test_logmel_speech_frames_louder_than_silence():
    audio = load_audio(clip("ANG"))
    raw = LogMelExtractor(LogMelConfig(normalisation="none")).log_mel(audio)
    energy = raw.mean(1)
    assert energy.max() - energy.min() > 5  # log-energy range between pauses and speech


def test_running_normalisation_carries_state_and_resets():
    audio = load_audio(clip("ANG"))
    ex = LogMelExtractor(LogMelConfig(normalisation="running", running_seconds=1.0))
    a = ex(audio[:16000])
    b = ex(audio[16000:])
    ex.reset()
    b_fresh = ex(audio[16000:])
    assert a.shape[1] == b.shape[1] == 80
    assert not np.allclose(b, b_fresh)  # the first chunk's statistics influenced the second
    np.testing.assert_allclose(b_fresh.mean(0), 0, atol=1e-3)  # fresh state = this chunk's stats


def test_logmel_edge_cases():
    ex = LogMelExtractor()
    assert ex(np.zeros(0, np.float32)).shape == (0, 80)
    assert ex(np.zeros(100, np.float32)).shape == (1, 80)
    with pytest.raises(ValueError):
        ex(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="normalisation"):
        LogMelConfig(normalisation="global")


def test_wav2vec2_architecture_frames_at_50_hz():
    # No wav2vec2 weights offline: the real architecture with random weights checks shapes and rate.
    small = {
        "num_hidden_layers": 1,
        "intermediate_size": 256,
        "conv_dim": [32] * 7,
        "num_conv_pos_embeddings": 16,
    }
    cfg = Wav2Vec2Config(init="random", config_overrides=small)  # default strides: 320 samples/frame
    ex = Wav2Vec2Extractor(cfg)
    audio = load_audio(clip("NEU"))
    f = ex(audio)
    assert ex.dim == 768 and ex.frame_rate == 50.0
    assert f.dtype == np.float32 and f.shape[1] == 768
    assert abs(len(f) - len(audio) / 320) <= 1.5
    assert ex(np.zeros(100, np.float32)).shape == (0, 768)


def test_wav2vec2_missing_weights_error():
    with pytest.raises(RuntimeError, match="huggingface-cli download"):
        Wav2Vec2Extractor(Wav2Vec2Config())
