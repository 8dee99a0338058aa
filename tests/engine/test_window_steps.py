"""Each window step on its own, with the real offline extractors, the shipped fusion model and a real
clip's audio (CREMA-D actor 1001, angry)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.core.timeline import WindowSpec
from engine.frames import ModalityHealth
from engine.stages.asr import ASRPass
from engine.stages.fusion import FusionStage
from engine.stages.speech_text import SpeechText
from engine.stages.window_steps import (
    FeatureStep,
    FusionStep,
    SmoothingStep,
    WindowInputs,
    WindowState,
    window_event,
)

from .media import ANG_WAV


@pytest.fixture(scope="module")
def speech_frames(extractors: Any) -> np.ndarray:
    import soundfile as sf

    pcm, sr = sf.read(ANG_WAV, dtype="float32")
    assert sr == 16000
    return np.asarray(extractors.speech(pcm), np.float32)


def state(features: np.ndarray | None, usable: tuple[str, ...], error: str = "") -> WindowState:
    spec = WindowSpec(0, 0.0, 2.0)
    w = WindowInputs(spec, np.zeros(32000, np.float32), 1.0, [], [], {"audio": "", "video": ""})
    s = WindowState(w)
    s.health = {m: ModalityHealth("present" if m in usable else "missing", "" if m in usable else "off")
                for m in ("text", "audio", "video")}
    s.st = SpeechText(features, error, ASRPass("disabled"), [], [], [])
    return s


def test_features_keep_real_frames_and_mark_what_cannot_be_read(extractors: Any, speech_frames) -> None:
    step = FeatureStep(extractors)
    s = state(speech_frames, ("audio", "video"))
    step(s)
    assert s.features["audio"].shape == speech_frames.shape and s.health["audio"].state == "present"
    # no face frame in the window although video was usable: an extraction failure, not a crash
    assert "video" not in s.features and s.health["video"].state == "missing"
    assert s.health["video"].reason == "feature extraction failed: ValueError"
    assert s.errors and s.errors[0].startswith("video features: ValueError")
    assert "text" not in s.features and s.health["text"].reason == "off"  # unusable: never extracted

    bad = speech_frames.copy()
    bad[3, 5] = np.nan
    s = state(bad, ("audio",))
    step(s)
    assert "audio" not in s.features and s.health["audio"].reason == "non-finite features (NaN/inf)"
    s = state(None, ("audio",), error="encoder failed")
    step(s)
    assert s.health["audio"].reason == "feature extraction failed: RuntimeError"
    assert s.errors == ["audio features: RuntimeError: encoder failed"]


def test_fusion_reads_the_voice_and_marks_the_others_reconstructed(
    extractors: Any, fusion: Any, backend: Any, speech_frames
) -> None:
    step = FusionStep(FusionStage(fusion, backend))
    s = state(speech_frames, ("audio",))
    FeatureStep(extractors)(s)
    step(s)
    assert s.condition == "a" and s.raw is not None and abs(float(s.raw.sum()) - 1.0) < 1e-5
    states = [s.health[m].state for m in ("text", "audio", "video")]
    assert states == ["reconstructed", "present", "reconstructed"]
    assert s.health["text"].reason == "off"  # the reason it was not read stays
    assert "fusion" in s.latency_ms

    nothing = state(None, ())
    step(nothing)
    assert nothing.raw is None and nothing.condition == ""
    assert {h.state for h in nothing.health.values()} == {"missing"}


def test_smoothing_averages_readings_and_skips_windows_without_one(
    extractors: Any, fusion: Any, backend: Any, speech_frames
) -> None:
    smooth = SmoothingStep(alpha=0.5)
    first = np.array([1.0, 0.0, 0.0, 0.0])
    s1, s2, s3 = state(None, ()), state(None, ()), state(None, ())
    s1.raw, s3.raw = first, np.array([0.0, 1.0, 0.0, 0.0])
    for s in (s1, s2, s3):
        smooth(s)
    assert np.allclose(s1.probs, first) and s2.probs is None
    assert np.allclose(s3.probs, [0.5, 0.5, 0.0, 0.0])  # the window without a reading left the state as is

    s = state(speech_frames, ("audio",))
    FeatureStep(extractors)(s)
    FusionStep(FusionStage(fusion, backend))(s)
    SmoothingStep(alpha=0.5)(s)
    ev = window_event(s, "clip", fusion)
    assert ev.condition == "a" and ev.label == max(ev.probs, key=ev.probs.get)
    assert ev.raw_probs == pytest.approx(ev.probs)  # the first window: nothing to smooth with
    assert ev.model == fusion.identity and ev.modalities["audio"].state == "present"
    assert "window" in ev.latency_ms and ev.errors == []
