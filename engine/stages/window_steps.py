"""The steps of one window's work, in order, each with one job (``WindowProcessor`` runs them):

health -> speech and text -> features -> fusion -> smoothing -> experts; ``window_event`` then writes
the EmotionEvent. Each step reads and fills one ``WindowState``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.config import EngineConfig
from engine.core.timeline import WindowSpec
from engine.frames import EmotionEvent, ExpertReading, FaceInfo, ModalityHealth
from engine.stages.face import FaceRecord, expert_reading
from engine.stages.fusion import EMASmoother, FusionModel, FusionStage
from engine.stages.health import audio_health, text_health, video_health
from engine.stages.speech_text import SpeechText, SpeechTextStage
from models.modalities import MODALITIES, condition_name

if TYPE_CHECKING:
    from models.encoders.profile import Extractors


@dataclass
class WindowInputs:
    """Everything one window needs, sliced from the timelines on the event loop."""

    spec: WindowSpec
    pcm: np.ndarray  # [n] float32, 16 kHz: the window's received audio
    coverage: float  # received fraction of the window (0..1)
    speech: list[tuple[float, float]]  # VAD (media time, speech probability) per 32 ms chunk
    records: list[FaceRecord]  # analysed video frames
    reasons: dict[str, str]  # audio/video: why the source is down, or ""
    skip_asr: str = ""  # live and behind: why this window gets no recognition pass
    pcm_t: float | None = None  # media time of pcm's first sample (default: the window start)
    # The recognition span when it is longer than the window: (pcm, media time of its first sample, VAD)
    asr_audio: tuple[np.ndarray, float, list[tuple[float, float]]] | None = None


@dataclass
class WindowState:
    """What the steps know about one window so far."""

    w: WindowInputs
    t0: float = field(default_factory=time.perf_counter)
    latency_ms: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    health: dict[str, ModalityHealth] = field(default_factory=dict)
    st: SpeechText | None = None  # the speech-and-text step's result
    features: dict[str, np.ndarray] = field(default_factory=dict)  # usable modalities' frames
    condition: str = ""  # the availability set fused ("" when nothing was fused)
    raw: np.ndarray | None = None  # the fused probabilities of this window alone
    probs: np.ndarray | None = None  # smoothed over windows
    experts: dict[str, ExpertReading] = field(default_factory=dict)


Step = Callable[[WindowState], None]


class HealthStep:
    """Audio and video health from what arrived (coverage, VAD, face frames, source failures)."""

    def __init__(self, cfg: EngineConfig, vad_enabled: bool) -> None:
        self.cfg, self.vad_enabled = cfg, vad_enabled

    def __call__(self, s: WindowState) -> None:
        t = time.perf_counter()
        w, hc = s.w, self.cfg
        probs = [p for _, p in w.speech]
        s.health["audio"] = audio_health(
            w.pcm, w.coverage, probs, hc.audio_health, w.reasons["audio"], self.vad_enabled
        )
        s.health["video"] = video_health(
            w.records, max(w.spec.duration, 1e-3), hc.video_health, w.reasons["video"]
        )
        s.latency_ms["health"] = (time.perf_counter() - t) * 1e3


class SpeechTextStep:
    """Speech features and the window's recognition pass (``SpeechTextStage``), then text health."""

    def __init__(self, cfg: EngineConfig, stage: SpeechTextStage, vad_enabled: bool) -> None:
        self.cfg, self.stage, self.vad_enabled = cfg, stage, vad_enabled

    def __call__(self, s: WindowState) -> None:
        w, spec = s.w, s.w.spec
        asr_audio = w.asr_audio if w.asr_audio is None or self.vad_enabled else (*w.asr_audio[:2], None)
        st = self.stage(
            spec.t_start,
            spec.t_end,
            w.pcm,
            spec.t_start if w.pcm_t is None else w.pcm_t,
            s.health["audio"],
            w.speech if self.vad_enabled else None,
            w.skip_asr,
            spec.final,
            asr_audio,
        )
        s.st = st
        s.latency_ms.update(st.latency_ms)
        asr_on = self.stage.asr.enabled
        s.health["text"] = text_health(
            st.committed, st.tentative, self.cfg.text_health, s.health["audio"], st.asr, asr_on
        )
        if st.asr.state == "failed":
            s.errors.append(f"asr: {st.asr.reason}")


class FeatureStep:
    """Each usable modality's frames; a failed extractor, no frames or non-finite values mark it missing."""

    def __init__(self, extractors: Extractors) -> None:
        self.extractors = extractors

    def __call__(self, s: WindowState) -> None:
        st = s.st
        assert st is not None, "FeatureStep runs after SpeechTextStep"
        words = st.committed + st.tentative

        def speech() -> np.ndarray:
            if st.error:
                raise RuntimeError(st.error)
            return st.features

        self.extract(s, "audio", speech, timed=False)  # its time is the speech step's
        self.extract(s, "text", lambda: self.extractors.text(" ".join(w.text for w in words)))
        self.extract(s, "video", lambda: np.stack([r.feature for r in s.w.records if r.present]))

    @staticmethod
    def extract(s: WindowState, m: str, fn: Callable[[], Any], timed: bool = True) -> None:
        h = s.health[m]
        if not h.usable:
            return
        t = time.perf_counter()
        try:
            x = np.asarray(fn(), np.float32)
        except Exception as e:  # noqa: BLE001 - an extractor failure is a missing modality
            s.health[m] = ModalityHealth("missing", f"feature extraction failed: {type(e).__name__}", h.stats)
            s.errors.append(f"{m} features: {type(e).__name__}: {e}")
            return
        finally:
            if timed:
                s.latency_ms[f"{m}_features"] = (time.perf_counter() - t) * 1e3
        if x.ndim != 2 or x.shape[0] == 0:
            s.health[m] = ModalityHealth("missing", "no feature frames", h.stats)
        elif not np.all(np.isfinite(x)):
            s.health[m] = ModalityHealth("missing", "non-finite features (NaN/inf)", h.stats)
        else:
            s.features[m] = x


class FusionStep:
    """The fused reading of the usable modalities; the others are marked reconstructed (or missing when
    nothing could be fused)."""

    def __init__(self, fusion: FusionStage) -> None:
        self.fusion = fusion

    def __call__(self, s: WindowState) -> None:
        avail = np.array([1.0 if s.health[m].usable else 0.0 for m in MODALITIES], np.float32)
        if not avail.any():
            return
        t = time.perf_counter()
        raw = self.fusion(s.features, avail)
        s.latency_ms["fusion"] = (time.perf_counter() - t) * 1e3
        if np.all(np.isfinite(raw)):
            s.raw, s.condition = raw, condition_name(tuple(int(a) for a in avail))
        else:
            s.errors.append("fusion produced non-finite probabilities")
        for m in MODALITIES:
            h = s.health[m]
            if not h.usable:
                state = "reconstructed" if s.raw is not None else "missing"
                s.health[m] = ModalityHealth(state, h.reason, h.stats)


class SmoothingStep:
    """The reading smoothed over windows (EMA); a window without a reading leaves the state unchanged."""

    def __init__(self, alpha: float) -> None:
        self.smoother = EMASmoother(alpha)

    def __call__(self, s: WindowState) -> None:
        if s.raw is not None:
            s.probs = self.smoother(s.raw)


class ExpertStep:
    """Each expert's own reading: the face model's (calibrated) and the checkpoint's single-modality heads
    on the usable modalities."""

    def __init__(self, extractors: Extractors, fusion_model: FusionModel) -> None:
        self.extractors = extractors
        self.fm = fusion_model

    def __call__(self, s: WindowState) -> None:
        names = self.fm.class_names
        embedder = self.extractors.face.embedder
        reading = expert_reading(s.w.records, names, tuple(embedder.class_names))
        if reading is not None:
            probs, n = reading
            cal = self.fm.calibrate_face(np.array([probs[c] for c in names]))
            probs = {c: float(v) for c, v in zip(names, cal, strict=True)}
            s.experts["face"] = ExpertReading(embedder.model_name, probs, max(probs, key=probs.get), n)
        for name, head in self.fm.experts.items():
            x = s.features.get(head.modality)
            if x is None:
                continue  # that modality is not usable in this window: no reading
            p = head(x)
            probs = {c: float(v) for c, v in zip(names, p, strict=True)}
            s.experts[name] = ExpertReading(f"{name}_head", probs, names[int(np.argmax(p))], len(x))


def window_event(s: WindowState, stream: str, fm: FusionModel) -> EmotionEvent:
    """The window's EmotionEvent from what the steps found (``seq`` and ``wall_time`` are set on delivery)."""
    spec, records, st = s.w.spec, s.w.records, s.st
    assert st is not None
    faces = [r for r in records if r.present]
    face = FaceInfo(faces[-1].box, float(np.median([r.score for r in faces]))) if faces else None
    if records:
        s.latency_ms["face"] = float(np.mean([r.ms for r in records]))
    s.latency_ms["window"] = (time.perf_counter() - s.t0) * 1e3
    names = fm.class_names

    def as_dict(p: np.ndarray) -> dict[str, float]:
        return {c: float(v) for c, v in zip(names, p, strict=True)}

    return EmotionEvent(
        seq=0,
        stream=stream,
        t_start=round(spec.t_start, 4),
        t_end=round(spec.t_end, 4),
        wall_time=0.0,
        probs=None if s.probs is None else as_dict(s.probs),
        label=None if s.probs is None else names[int(np.argmax(s.probs))],
        condition=s.condition,
        modalities=s.health,
        transcript=" ".join(w.text for w in st.committed),
        tentative=" ".join(w.text for w in st.tentative),
        words=st.committed + st.tentative,
        new_words=st.new,
        asr={"state": st.asr.state, "reason": st.asr.reason},
        face=face,
        latency_ms=s.latency_ms,
        model=fm.identity,
        trained=fm.trained,
        raw_probs=None if s.raw is None else as_dict(s.raw),
        experts=s.experts,
        errors=s.errors,
        final=spec.final,
    )
