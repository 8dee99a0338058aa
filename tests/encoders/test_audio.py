from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from models.encoders.audio import NoAudioStreamError, load_audio, resample, to_mono
from tests.encoders.media import clip, read_frames, wav, write_clip


def test_flv_mp3_decodes_to_the_bundled_16k_wav():
    # The flv holds 44.1 kHz mp3; wav16k/ holds the same audio already converted by other tools.
    x = load_audio(clip("ANG"))
    ref, sr = sf.read(wav("ANG"), dtype="float32")
    assert sr == 16000 and x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - len(ref)) <= 2
    n = min(len(x), len(ref))
    assert np.corrcoef(x[:n], ref[:n])[0, 1] > 0.999
    assert abs(np.abs(x).max() - np.abs(ref).max()) < 0.01


def test_span_cuts_seconds():
    full = load_audio(wav("HAP"))
    part = load_audio(wav("HAP"), start=0.5, end=1.0)
    assert len(part) == 8000
    np.testing.assert_allclose(part, full[8000:16000], atol=1e-6)


def test_stereo_file_is_averaged_and_resampled(tmp_path):
    sr = 44100
    t = np.arange(sr) / sr
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    right = -left  # anti-phase: a correct mean gives silence, taking one channel would not
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1), sr)
    assert np.abs(load_audio(tmp_path / "st.wav")).max() < 1e-3
    sf.write(tmp_path / "st2.wav", np.stack([left, 0 * left], 1), sr)
    y = load_audio(tmp_path / "st2.wav")
    assert len(y) == 16000
    assert abs(np.abs(y[1000:-1000]).max() - 0.25) < 0.01  # half of one channel's amplitude
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * 16000 / len(y) - 440) <= 1


def test_to_mono_axes_and_int_scaling():
    pcm = np.array([[32767, -32768], [0, 0]], dtype=np.int16)  # [n=2, C=2]
    np.testing.assert_allclose(to_mono(pcm, channels_axis=1), [-0.5 / 32768, 0.0], atol=1e-6)
    planar = np.stack([np.ones(100), np.zeros(100)])  # [C=2, n=100]
    assert to_mono(planar).shape == (100,)  # axis guessed from the shape
    np.testing.assert_allclose(to_mono(planar), 0.5)


def test_resample_keeps_a_tone_and_rejects_bad_rates():
    x = np.sin(2 * np.pi * 1000 * np.arange(48000) / 48000).astype(np.float32)
    y = resample(x, 48000, 16000)
    assert len(y) == 16000
    assert abs(np.argmax(np.abs(np.fft.rfft(y))) - 1000) <= 1
    with pytest.raises(ValueError):
        resample(x, 0, 16000)


def test_video_without_audio_raises_no_audio(tmp_path):
    frames, rate = read_frames(clip("NEU"))
    p = write_clip(tmp_path / "silent.mkv", frames[:5], rate, audio=None)
    with pytest.raises(NoAudioStreamError):
        load_audio(p)
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "nope.wav")
