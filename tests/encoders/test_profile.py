from __future__ import annotations

import json

import pytest

from models.config_io import to_dict
from models.encoders.profile import (
    ExtractorProfile,
    build_extractors,
    builtin_profile,
    load_profile,
    profile_from_description,
    profile_mismatches,
)


def test_offline_profile_dims_and_rates_without_loading_models():
    ex = build_extractors("offline")
    # Version 2: Whisper encoder states for speech; the face embedding carries the expert's log-probs.
    assert ex.dims == {"text": 384, "audio": 384, "video": 128 + 7}
    assert ex.frame_rates == {"text": None, "audio": 50.0, "video": 10.0}
    assert "text" not in ex.__dict__ and "face" not in ex.__dict__  # nothing was loaded


def test_paper_profile_config():
    p = load_profile("paper")
    assert p.text.model == "bert-base-uncased"
    assert p.speech.kind == "wav2vec2" and p.speech.wav2vec2.model == "facebook/wav2vec2-base"
    assert p.face.model == "denseface" and p.face.fps == 30.0
    r = load_profile("paper", ["text.init=random", "speech.wav2vec2.init=random", "face.init=random"])
    ex = build_extractors(r)
    assert ex.dims == {"text": 768, "audio": 768, "video": 342}
    assert ex.frame_rates["audio"] == 50.0


def test_description_is_json_and_rebuilds_the_profile(extractors):
    desc = extractors.describe()
    text = json.dumps(desc)  # recorded in manifests and checkpoints
    again = json.loads(text)
    assert again["identity"]["face"]["weights"].startswith("sha256:")
    assert again["identity"]["face"]["detector"].startswith("sha256:")
    assert again["versions"]["faster-whisper"]
    rebuilt = profile_from_description(again)
    assert isinstance(rebuilt, ExtractorProfile)
    assert to_dict(rebuilt) == to_dict(extractors.profile)
    assert profile_mismatches(again, build_extractors(rebuilt).describe()) == []


def test_mismatches_name_what_changed(extractors):
    rec = extractors.describe()
    other = build_extractors(
        load_profile("offline", ["face.margin=0.3", "speech.kind=logmel", "face.logprobs=false"])
    )
    diffs = profile_mismatches(rec, other.describe())
    assert any(d.startswith("face.margin") for d in diffs)
    assert any(d.startswith("speech.kind: recorded 'whisper', current 'logmel'") for d in diffs)
    assert any(d.startswith("dims.video: recorded 135, current 128") for d in diffs)
    # Devices and the ASR model do not change the features: not a mismatch.
    same = build_extractors(load_profile("offline", ["asr.beam_size=5", "face.device=cpu"]))
    assert profile_mismatches(rec, same.describe()) == []
    assert profile_mismatches({}, rec)  # a record without identity is never "compatible"


@pytest.mark.parametrize("name", ["offline", "paper"])
def test_yaml_profiles_equal_the_builtin_ones(name):
    assert to_dict(load_profile(name)) == builtin_profile(name)


def test_bad_profiles_fail_loudly():
    with pytest.raises(FileNotFoundError, match="unknown extractor profile"):
        load_profile("fast")
    with pytest.raises(ValueError, match="unknown key"):
        load_profile("offline", ["face.colour=1"])
    with pytest.raises(ValueError, match="speech.kind"):
        load_profile("offline", ["speech.kind=mfcc"])
    with pytest.raises(ValueError, match="face.init=random"):
        load_profile("offline", ["face.init=random"])


@pytest.mark.parametrize("kind", ["whisper", "logmel", "wav2vec2"])
def test_every_registered_speech_kind_gives_the_frames_its_entry_promises(kind: str) -> None:
    """The registry entry's width and rate (known without weights) match what the built extractor gives on
    a real clip; its identity names the kind."""
    import soundfile as sf

    from models.encoders.kinds import SPEECH_KINDS, SharedEncoderSpeech, SpeechExtractor

    from .media import wav

    assert set(SPEECH_KINDS) == {"whisper", "logmel", "wav2vec2"}
    small = ["speech.wav2vec2.init=random", "speech.wav2vec2.config_overrides={num_hidden_layers: 1, "
             "intermediate_size: 256, conv_dim: [32, 32, 32, 32, 32, 32, 32], num_conv_pos_embeddings: 16}"]
    ex = build_extractors(load_profile("offline", [f"speech.kind={kind}", *small]))
    audio, sr = sf.read(wav("ANG"), dtype="float32")
    frames = ex.speech(audio)
    assert isinstance(ex.speech, SpeechExtractor)
    assert isinstance(ex.speech, SharedEncoderSpeech) == (kind == "whisper")  # only Whisper shares its pass
    assert frames.ndim == 2 and frames.shape[1] == ex.dims["audio"]
    assert abs(len(frames) - len(audio) / sr * ex.frame_rates["audio"]) <= 2
    assert ex.identity()["speech"]["kind"] == kind
