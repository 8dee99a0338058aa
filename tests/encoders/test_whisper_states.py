"""Whisper encoder states as speech features: rate, width, 30 s chunking, and the engine's window sizes."""

from __future__ import annotations

import numpy as np
import pytest

from models.encoders.audio import load_audio
from models.encoders.whisper_states import WhisperStatesConfig, weights_sha256, whisper_dim
from tests.encoders.media import offline_extractors, wav


@pytest.fixture(scope="module")
def speech():  # noqa: ANN201
    ex = offline_extractors()
    assert ex.profile.speech.kind == "whisper"
    return ex.speech


def test_frames_cover_the_audio_at_50_hz(speech) -> None:  # noqa: ANN001
    a = load_audio(wav("ANG"))
    x = speech(a)
    assert x.shape == (-(-len(a) // 320), 384) and x.dtype == np.float32 and np.isfinite(x).all()
    assert np.allclose(speech(a), x)  # deterministic
    assert whisper_dim(WhisperStatesConfig()) == 384 and speech.frame_rate == 50.0
    # A 1 s window (the engine's first window) is just shorter, from the same encoder pass shape.
    assert speech(a[:16000]).shape == (50, 384)
    assert speech(np.zeros(0, np.float32)).shape == (0, 384)


def test_long_audio_is_encoded_in_30_s_chunks(speech) -> None:  # noqa: ANN001
    a = load_audio(wav("HAP"))
    long = np.tile(a, int(np.ceil(35 * 16000 / len(a))))[: 35 * 16000]
    x = speech(long)
    assert x.shape == (1750, 384)
    first = speech(long[: 30 * 16000])
    # The first chunk is the first 30 s encoded alone (up to Whisper's log-mel normalisation, which uses the
    # loudest frame of the whole input, and int8 rounding).
    assert np.abs(x[:1500] - first).mean() < 0.05 * np.abs(first).mean()
    assert not np.allclose(x[1500:1510], first[:10])


def test_identity_is_the_weight_file_and_missing_models_say_how_to_get_one(tmp_path) -> None:  # noqa: ANN001
    cfg = WhisperStatesConfig()
    assert len(weights_sha256(cfg.resolved_path())) == 64
    with pytest.raises(FileNotFoundError, match="ct2-transformers-converter"):
        WhisperStatesConfig(model=str(tmp_path)).resolved_path()
    with pytest.raises(ValueError, match="device"):
        WhisperStatesConfig(device="tpu")


def test_a_short_context_gives_frames_of_the_same_shape_from_a_fraction_of_the_pass(speech) -> None:  # noqa: ANN001
    """With ``context_margin_s`` the encoder sees the clip plus the margin, not 30 s: the same frames per
    second, states that differ from the padded ones (attention reads the padding) but stay close to
    them, and one pass serves the features and a decoder of the same context only."""
    from types import SimpleNamespace

    from models.encoders.asr import ASRConfig
    from models.encoders.whisper_states import WhisperStatesExtractor

    assert speech.cfg.context_margin_s is None  # the shipped profile pads to 30 s
    a = load_audio(wav("SAD"))
    short = WhisperStatesExtractor.__new__(WhisperStatesExtractor)  # the loaded model, a short context
    short.cfg, short.model, short.dim = WhisperStatesConfig(context_margin_s=0.5), speech.model, speech.dim
    x, full = short(a), speech(a)
    assert x.shape == full.shape and np.isfinite(x).all()
    feats, enc = short.encode_window(a)
    _, enc_full = speech.encode_window(a)
    assert np.allclose(feats, x) and enc_full.shape[1] == 1500 and enc.shape[1] < 200  # a 2.5 s clip
    cos = (x * full).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(full, axis=1))
    assert 0.5 < float(np.median(cos)) < 0.9999  # not the padded states, but the same representation
    assert short.same_encoder(SimpleNamespace(cfg=ASRConfig(context_margin_s=0.5)))
    assert not short.same_encoder(SimpleNamespace(cfg=ASRConfig()))  # a decoder of another context
    with pytest.raises(ValueError, match="context_margin_s"):
        WhisperStatesConfig(context_margin_s=-1.0)


def test_the_context_margin_is_part_of_the_features_identity() -> None:
    from models.encoders.profile import build_extractors, load_profile, profile_mismatches

    padded = build_extractors("offline")
    assert "context_margin_s" not in padded.identity()["speech"]  # the shipped models' features
    short = build_extractors(load_profile("offline", ["speech.whisper.context_margin_s=0.5"]))
    assert short.identity()["speech"]["context_margin_s"] == 0.5
    diffs = profile_mismatches(padded.describe(), short.describe())
    assert diffs == ["speech.context_margin_s: recorded None, current 0.5"]
