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


def test_window_decode_reads_the_speech_features_encoder_output(extractors):
    """One encoder pass serves the speech features and recognition: decoding the states extractor's
    encoder output gives the clip's words, timed inside the clip; a forced prefix is not repeated."""
    audio = load_audio(clip("ANG"))
    speech = extractors.speech
    assert speech.same_encoder(extractors.asr)
    feats, enc = speech.encode_window(audio)
    assert feats.shape == speech(audio).shape and enc.shape[:2] == (1, 1500)
    d = extractors.asr.decode(enc, len(audio))
    assert "jacket" in d.text.lower() and not d.repeat_cut
    assert all(0.0 <= w.start <= w.end <= len(audio) / 16000 + 0.1 for w in d.words)
    assert d.no_speech_prob < 0.5 and d.compression_ratio < 2.4
    first = d.words[0].text.strip()
    rest = extractors.asr.decode(enc, len(audio), prefix=first)
    assert rest.prefix_kept and [w.text.strip() for w in rest.words] == [w.text.strip() for w in d.words[1:]]
    assert rest.words[0].start >= d.words[0].end - 0.05


def test_repetition_loops_are_cut_after_their_first_occurrence():
    from models.encoders.whisper_decode import cut_repetition as _cut_repetition

    assert _cut_repetition([5, 6, 7, 7, 7, 7, 8], 3) == ([5, 6, 7], True)
    assert _cut_repetition([1, 2, 3, 1, 2, 3, 1, 2, 3, 9], 3) == ([1, 2, 3], True)
    assert _cut_repetition([1, 2, 1, 2, 3], 3) == ([1, 2, 1, 2, 3], False)  # twice is not a loop
    assert _cut_repetition([4, 4, 4], 2) == ([4], True)


def save_pickled(model, folder):
    """A model folder as older tools wrote it: config.json and a pickled pytorch_model.bin."""
    import torch

    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")


@pytest.mark.parametrize("kind", ["text", "speech"])
def test_user_models_with_only_pickled_weights_are_refused(kind, tmp_path):
    """Hugging Face models the user points at load from safetensors only; a folder with nothing but a
    pickled pytorch_model.bin is refused with a message that says how to convert it."""
    import torch
    from transformers import BertConfig, BertModel, Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    if kind == "text":
        from models.encoders.text import TextConfig, TextEncoder, offline_minilm_path

        model = BertModel(
            BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
            add_pooling_layer=False,
        )
        save_pickled(model, tmp_path)
        build = lambda: TextEncoder(TextConfig(model=str(tmp_path), tokenizer=str(offline_minilm_path())))  # noqa: E731
    else:
        from models.encoders.speech import Wav2Vec2Config as W2VCfg
        from models.encoders.speech import Wav2Vec2Extractor

        model = Wav2Vec2Model(
            Wav2Vec2Config(
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=64,
                conv_dim=(32,) * 7,
            )
        )
        save_pickled(model, tmp_path)
        build = lambda: Wav2Vec2Extractor(W2VCfg(model=str(tmp_path)))  # noqa: E731
    assert (tmp_path / "pytorch_model.bin").is_file() and not list(tmp_path.glob("*.safetensors"))
    with pytest.raises(RuntimeError, match="no safetensors weights"):
        build()
    (tmp_path / "pytorch_model.bin").unlink()
    model.save_pretrained(tmp_path)  # converted to safetensors: now it loads
    build()


def test_a_short_encoder_context_decodes_the_same_words(extractors):
    """The encoder sees the audio plus a margin instead of 30 s: a fraction of the frames, and the
    decoder still reads the clip's words from them, timed inside the clip."""
    from models.encoders.asr import context_frames

    audio = load_audio(clip("ANG"))
    short = WhisperASR.__new__(WhisperASR)  # the loaded weights, another context
    short.cfg, short.model = ASRConfig(context_margin_s=0.5), extractors.asr.model
    enc = short.encode(audio)
    frames = context_frames(len(audio) // 160 + 1, 0.5)
    assert enc.shape == (1, frames // 2, 384) and frames // 2 < 400  # a 2.5 s clip: not 1500
    d = short.decode(enc, len(audio))
    assert "jacket" in d.text.lower() and not d.repeat_cut
    assert all(0.0 <= w.start <= w.end <= len(audio) / 16000 + 0.1 for w in d.words)


def test_encoder_context_arithmetic_and_validation():
    from models.encoders.asr import MAX_MEL_FRAMES, context_frames

    assert context_frames(401, None) == MAX_MEL_FRAMES  # padded to 30 s
    assert context_frames(401, 0.0) == 402  # even: the encoder's convolution has stride 2
    assert context_frames(401, 1.0) == 502
    assert context_frames(2950, 1.0) == MAX_MEL_FRAMES  # never past Whisper's 30 s
    # A minimum: a 1 s input gets a 4.5 s context, a 4 s one its 4 s plus the margin, a long one no cap.
    assert context_frames(101, 0.5, 4.5) == 450
    assert context_frames(401, 0.5, 4.5) == 452
    assert context_frames(801, 0.5, 4.5) == 852
    assert context_frames(101, None, 4.5) == MAX_MEL_FRAMES
    for bad in (-0.1, 31.0, "1"):
        with pytest.raises(ValueError, match="context_margin_s"):
            ASRConfig(context_margin_s=bad)
        with pytest.raises(ValueError, match="context_min_s"):
            ASRConfig(context_margin_s=0.5, context_min_s=bad)
    with pytest.raises(ValueError, match="needs a context_margin_s"):
        ASRConfig(context_min_s=4.5)  # no margin: always 30 s, a minimum would mean nothing
