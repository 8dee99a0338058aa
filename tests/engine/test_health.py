"""Modality health rules on controlled inputs (each rule can fire, and only when it should)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import AudioHealthConfig, TextHealthConfig, VideoHealthConfig
from engine.frames import ModalityHealth, Word
from engine.stages.asr import ASRPass
from engine.stages.face import FaceRecord
from engine.stages.health import audio_health, text_health, video_health
from models.encoders.audio import load_audio
from tests.engine.media import ANG_WAV

A = AudioHealthConfig()
V = VideoHealthConfig()
T = TextHealthConfig()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(ANG_WAV)[8000:24000]  # 0.5-1.5 s: the spoken sentence


def test_audio_present_on_speech(speech: np.ndarray) -> None:
    h = audio_health(speech, 1.0, [0.9] * 31, A)
    assert h.state == "present" and h.reason == ""
    assert -40 < h.stats["dbfs"] < -10


def test_audio_rules(speech: np.ndarray) -> None:
    assert (
        audio_health(np.zeros(0, np.float32), 0.0, [], A, "microphone unavailable").reason
        == "dropout: microphone unavailable"
    )
    assert audio_health(speech[:4000], 0.25, [0.9] * 8, A).reason.startswith("dropout")
    assert audio_health(speech * 1e-4, 1.0, [0.9] * 31, A).reason.startswith("silence")
    assert audio_health(speech, 1.0, [0.01] * 31, A).reason == "silence: no speech detected (VAD)"
    # no VAD: loudness alone decides
    assert audio_health(speech, 1.0, [], A, vad_enabled=False).state == "present"
    clipped = np.clip(speech * 40, -1, 1)
    h = audio_health(clipped, 1.0, [0.9] * 31, A)
    assert h.reason.startswith("clipping") and h.stats["clip_ratio"] > A.max_clip_ratio
    bad = speech.copy()
    bad[10] = np.nan
    assert "NaN" in audio_health(bad, 1.0, [0.9] * 31, A).reason


def rec(
    t: float,
    present: bool = True,
    score: float = 0.95,
    luma: float = 110.0,
    motion: float = 1.0,
    loss: float = 0.0,
) -> FaceRecord:
    return FaceRecord(
        t,
        0.0,
        np.zeros(4, np.float32),
        present,
        (0, 0, 10, 10) if present else None,
        score if present else 0.0,
        loss if present else 1.0,
        luma,
        motion,
        None,
        1.0,
    )


def frames(n: int = 30, **kw: float) -> list[FaceRecord]:
    return [rec(i / 30, **kw) for i in range(n)]


def test_video_rules() -> None:
    assert video_health(frames(), 1.0, V).state == "present"
    assert video_health([], 1.0, V, "camera 0 lost").reason == "no frames: camera 0 lost"
    assert video_health(frames(luma=5.0), 1.0, V).reason.startswith("dark")
    assert video_health(frames(motion=0.0), 1.0, V).reason.startswith("frozen")
    assert video_health(frames(3), 1.0, V).reason.startswith("frame-rate collapse")
    assert video_health(frames(present=False), 1.0, V).reason.startswith("no face")
    assert video_health(frames(score=0.3), 1.0, V).reason.startswith("occluded: detection score")
    assert video_health(frames(loss=0.8), 1.0, V).reason.startswith("occluded:")
    # a minority of faceless frames is tolerated
    mixed = frames(20) + [rec(0.7 + i / 30, present=False) for i in range(10)]
    assert video_health(mixed, 1.0, V).state == "present"


def test_text_rules() -> None:
    ok = ModalityHealth("present")
    silent = ModalityHealth("missing", "silence: no speech detected (VAD)")
    w = [Word("jacket", 1.0, 1.3)]
    assert text_health(w, [], T, ok).state == "present"
    assert text_health([], w, T, ok).state == "present"  # tentative words count by default
    assert text_health([], w, TextHealthConfig(use_tentative=False), ok).reason == "no words recognised"
    assert text_health([], [], T, ok).reason == "no words recognised"
    assert text_health(w, [], T, silent).reason == "no speech (silence)"
    failed = ASRPass("failed", "RuntimeError: boom")
    assert text_health([], [], T, ok, failed).reason == "asr error: RuntimeError: boom"
    # A pass skipped to keep up is not silence: the reason says recognition is lagging.
    lagging = ASRPass("skipped", "ASR lagging: window started 2.0 s after its media")
    assert text_health([], [], T, ok, lagging).reason.startswith("ASR lagging")
    assert text_health(w, [], T, ok, lagging).state == "present"  # earlier passes' words still count
    rejected = ASRPass("rejected", "repetitive output (compression ratio 3.1)")
    assert "rejected" in text_health([], [], T, ok, rejected).reason
    assert text_health(w, [], T, ok, asr_enabled=False).reason == "speech recognition disabled"


def test_health_state_is_validated() -> None:
    with pytest.raises(ValueError, match="state"):
        ModalityHealth("gone")


def test_face_expert_maps_each_models_own_class_names() -> None:
    """FER+ (DenseFace, paper profile) names are not FER2013's: a happy face must read hap, not the
    {"neu": 1.0} that a FER2013-only mapping gave; each model labels its reading with its own name."""
    from engine.stages.face import expert_reading
    from models.encoders.denseface import FERPLUS_CLASSES, DenseFaceEmbedder
    from models.encoders.mini_xception import CLASS_NAMES, MiniXceptionEmbedder

    def rec(names: tuple[str, ...], top: str) -> FaceRecord:
        p = np.full(len(names), 0.02, np.float32)
        p[names.index(top)] = 1.0 - 0.02 * (len(names) - 1)
        return FaceRecord(0.0, 0.0, np.zeros(4, np.float32), True, (0, 0, 1, 1), 0.9, 0.0, 100.0, 1.0, p, 0.0)

    classes = ("ang", "hap", "neu", "sad")
    for names, top, want in (
        (FERPLUS_CLASSES, "happiness", "hap"),
        (FERPLUS_CLASSES, "sadness", "sad"),
        (FERPLUS_CLASSES, "anger", "ang"),
        (CLASS_NAMES, "happy", "hap"),
        (CLASS_NAMES, "angry", "ang"),
    ):
        probs, n = expert_reading([rec(names, top)] * 3, classes, names)
        assert max(probs, key=probs.get) == want and n == 3, (names, top, probs)
        assert abs(sum(probs.values()) - 1.0) < 1e-6
    assert DenseFaceEmbedder.model_name == "denseface_ferplus"
    assert MiniXceptionEmbedder.model_name == "mini_xception_fer2013"
