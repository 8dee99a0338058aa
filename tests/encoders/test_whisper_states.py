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


def on_model(speech, cfg: WhisperStatesConfig):  # noqa: ANN001, ANN201
    """An extractor with ``cfg``'s context on ``speech``'s loaded weights (no second model load)."""
    from models.encoders.whisper_states import WhisperStatesExtractor

    ex = WhisperStatesExtractor.__new__(WhisperStatesExtractor)
    ex.cfg, ex.model, ex.dim = cfg, speech.model, speech.dim
    return ex


def test_a_short_context_gives_frames_of_the_same_shape_from_a_fraction_of_the_pass(speech) -> None:  # noqa: ANN001
    """With ``context_margin_s`` the encoder sees the clip plus the margin, not 30 s: the same frames per
    second, states that differ from the padded ones (attention reads the padding) but stay close to
    them, and one pass serves the features and a decoder of the same context only."""
    from types import SimpleNamespace

    from models.encoders.asr import ASRConfig

    a = load_audio(wav("SAD"))
    padded = on_model(speech, WhisperStatesConfig())
    short = on_model(speech, WhisperStatesConfig(context_margin_s=0.5))
    x, full = short(a), padded(a)
    assert x.shape == full.shape and np.isfinite(x).all()
    feats, enc = short.encode_window(a)
    _, enc_full = padded.encode_window(a)
    assert np.allclose(feats, x) and enc_full.shape[1] == 1500 and enc.shape[1] < 200  # a 2.5 s clip
    cos = (x * full).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(full, axis=1))
    assert 0.5 < float(np.median(cos)) < 0.9999  # not the padded states, but the same representation
    assert short.same_encoder(SimpleNamespace(cfg=ASRConfig(context_margin_s=0.5)))
    assert not short.same_encoder(SimpleNamespace(cfg=ASRConfig()))  # a decoder of another context
    assert not short.same_encoder(SimpleNamespace(cfg=ASRConfig(context_margin_s=0.5, context_min_s=4.5)))
    with pytest.raises(ValueError, match="context_margin_s"):
        WhisperStatesConfig(context_margin_s=-1.0)


def test_a_minimum_context_encodes_a_short_input_as_a_full_window(speech) -> None:  # noqa: ANN001
    """With ``context_min_s`` a stream's first, short window is encoded in the context of a full one:
    the encoder output has the same length for 1 s and for 2 s of the clip, its frames over the audio
    are kept as before, and they differ from the same audio's frames in the bare short context."""
    a = load_audio(wav("SAD"))
    minimum = on_model(speech, WhisperStatesConfig(context_margin_s=0.5, context_min_s=4.5))
    bare = on_model(speech, WhisperStatesConfig(context_margin_s=0.5))
    one_s = a[:16000]
    f1, enc1 = minimum.encode_window(one_s)
    f2, enc2 = minimum.encode_window(a[:32000])
    assert enc1.shape == enc2.shape == (1, 225, speech.dim)  # 4.5 s of context for both
    assert f1.shape == (50, speech.dim) and f2.shape == (100, speech.dim)
    g1, encb = bare.encode_window(one_s)
    assert encb.shape[1] == 76 and g1.shape == f1.shape  # 1 s + 0.5 s without the minimum
    assert not np.allclose(f1, g1, atol=1e-3)  # the context changes the states over the same audio
    assert np.allclose(minimum(one_s), f1)  # the offline path (training features) encodes the same


def test_the_context_margin_is_part_of_the_features_identity() -> None:
    from models.encoders.profile import build_extractors, load_profile, profile_mismatches

    padded = build_extractors(
        load_profile("offline", ["speech.whisper.context_margin_s=null", "speech.whisper.context_min_s=0"])
    )
    assert "context_margin_s" not in padded.identity()["speech"]  # profiles before the margin
    assert "context_min_s" not in padded.identity()["speech"]
    short = build_extractors(
        load_profile("offline", ["speech.whisper.context_margin_s=0.5", "speech.whisper.context_min_s=4.5"])
    )
    assert short.identity()["speech"]["context_margin_s"] == 0.5
    assert short.identity()["speech"]["context_min_s"] == 4.5
    diffs = profile_mismatches(padded.describe(), short.describe())
    assert diffs == [
        "speech.context_margin_s: recorded None, current 0.5",
        "speech.context_min_s: recorded None, current 4.5",
    ]
