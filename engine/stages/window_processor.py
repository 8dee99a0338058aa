"""Window processing (blocking, worker thread): modality health, speech features and the window's
recognition pass, text and face features, NaN checks, fusion with reconstruction, smoothing, the face
expert reading, and the EmotionEvent."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.config import EngineConfig
from engine.frames import EmotionEvent, ExpertReading, FaceInfo, ModalityHealth
from engine.stages.asr import StreamingASR
from engine.stages.face import FaceRecord, expert_reading
from engine.stages.fusion import EMASmoother, FusionModel, FusionStage
from engine.stages.health import audio_health, text_health, video_health
from engine.stages.speech_text import SpeechTextStage
from engine.stages.window import WindowSpec
from models.modalities import MODALITIES, condition_name


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


class WindowProcessor:
    def __init__(
        self,
        cfg: EngineConfig,
        extractors: Any,
        fusion: FusionStage,
        fusion_model: FusionModel,
        vad_enabled: bool,
        asr: StreamingASR,
    ) -> None:
        self.cfg = cfg
        self.extractors = extractors
        self.fusion = fusion
        self.fusion_model = fusion_model
        self.vad_enabled = vad_enabled
        self.asr = asr
        self.speech_text = SpeechTextStage(
            extractors, asr, cfg.text_health.use_tentative, cfg.audio_health.vad_threshold
        )
        self.smoother = EMASmoother(cfg.ema_alpha)

    def trim(self, before: float) -> None:
        self.asr.trim(before)

    def failed(self, spec: WindowSpec, msg: str) -> EmotionEvent:
        """A degraded event for a window whose processing raised (keeps seq gapless)."""
        mods = {m: ModalityHealth("missing", "window processing failed") for m in MODALITIES}
        return EmotionEvent(
            0,
            self.cfg.stream,
            spec.t_start,
            spec.t_end,
            0.0,
            None,
            None,
            "",
            mods,
            "",
            model=self.fusion_model.identity if self.fusion_model else "?",
            trained=bool(self.fusion_model and self.fusion_model.trained),
            errors=[msg],
            final=spec.final,
        )

    def __call__(self, w: WindowInputs) -> EmotionEvent:
        """Blocking (worker thread): health, features, recognition, fusion for one window."""
        spec, pcm, records = w.spec, w.pcm, w.records
        lat: dict[str, float] = {}
        errors: list[str] = []
        t0 = time.perf_counter()
        hc = self.cfg
        probs = [p for _, p in w.speech]
        a_h = audio_health(pcm, w.coverage, probs, hc.audio_health, w.reasons["audio"], self.vad_enabled)
        v_h = video_health(records, max(spec.duration, 1e-3), hc.video_health, w.reasons["video"])
        lat["health"] = (time.perf_counter() - t0) * 1e3
        st = self.speech_text(
            spec.t_start,
            spec.t_end,
            pcm,
            spec.t_start if w.pcm_t is None else w.pcm_t,
            a_h,
            w.speech if self.vad_enabled else None,
            w.skip_asr,
            spec.final,
            w.asr_audio if w.asr_audio is None or self.vad_enabled else (*w.asr_audio[:2], None),
        )
        lat.update(st.latency_ms)
        committed, tentative = st.committed, st.tentative
        t_h = text_health(committed, tentative, hc.text_health, a_h, st.asr, self.asr.enabled)
        health = {"text": t_h, "audio": a_h, "video": v_h}
        words = committed + tentative
        transcript = " ".join(w.text for w in committed)
        feats: dict[str, np.ndarray] = {}

        def extract(m: str, fn: Any) -> None:
            if not health[m].usable:
                return
            t = time.perf_counter()
            try:
                x = np.asarray(fn(), np.float32)
            except Exception as e:  # noqa: BLE001 - an extractor failure is a missing modality
                health[m] = ModalityHealth(
                    "missing", f"feature extraction failed: {type(e).__name__}", health[m].stats
                )
                errors.append(f"{m} features: {type(e).__name__}: {e}")
                return
            finally:
                if m != "audio":
                    lat[f"{m}_features"] = (time.perf_counter() - t) * 1e3
            if x.ndim != 2 or x.shape[0] == 0:
                health[m] = ModalityHealth("missing", "no feature frames", health[m].stats)
            elif not np.all(np.isfinite(x)):
                health[m] = ModalityHealth("missing", "non-finite features (NaN/inf)", health[m].stats)
            else:
                feats[m] = x

        def speech_features() -> np.ndarray:
            if st.error:
                raise RuntimeError(st.error)
            return st.features

        ex = self.extractors
        extract("audio", speech_features)
        extract("text", lambda: ex.text(" ".join(w.text for w in words)))
        extract("video", lambda: np.stack([r.feature for r in records if r.present]))
        avail = np.array([1.0 if health[m].usable else 0.0 for m in MODALITIES], np.float32)
        probs_d = raw_d = None
        label = None
        condition = ""
        if avail.any():
            condition = condition_name(tuple(int(a) for a in avail))
            t = time.perf_counter()
            raw = self.fusion(feats, avail)
            lat["fusion"] = (time.perf_counter() - t) * 1e3
            if np.all(np.isfinite(raw)):
                smooth = self.smoother(raw)
                names = self.fusion_model.class_names
                raw_d = {c: float(p) for c, p in zip(names, raw, strict=True)}
                probs_d = {c: float(p) for c, p in zip(names, smooth, strict=True)}
                label = names[int(np.argmax(smooth))]
            else:
                errors.append("fusion produced non-finite probabilities")
                condition = ""
            for m in MODALITIES:
                if not health[m].usable:
                    health[m] = ModalityHealth(
                        "reconstructed" if probs_d else "missing", health[m].reason, health[m].stats
                    )
        faces = [r for r in records if r.present]
        face = None
        if faces:
            face = FaceInfo(faces[-1].box, float(np.median([r.score for r in faces])))
        experts: dict[str, ExpertReading] = {}
        if hc.expert:
            embedder = getattr(ex.face, "embedder", None)
            names = getattr(embedder, "class_names", None)
            reading = expert_reading(records, self.fusion_model.class_names, tuple(names)) if names else None
            if reading is not None:
                probs, n = reading
                names = self.fusion_model.class_names
                cal = self.fusion_model.calibrate_face(np.array([probs[c] for c in names]))
                probs = {c: float(v) for c, v in zip(names, cal, strict=True)}
                model = getattr(embedder, "model_name", type(embedder).__name__)
                experts["face"] = ExpertReading(model, probs, max(probs, key=probs.get), n)
            for name, head in self.fusion_model.experts.items():
                x = feats.get(head.modality)
                if x is None:
                    continue  # that modality is not usable in this window: no reading
                p = head(x)
                names = self.fusion_model.class_names
                experts[name] = ExpertReading(
                    f"{name}_head",
                    {c: float(v) for c, v in zip(names, p, strict=True)},
                    names[int(np.argmax(p))],
                    int(len(x)),
                )
        if st.asr.state == "failed":
            errors.append(f"asr: {st.asr.reason}")
        if records:
            lat["face"] = float(np.mean([r.ms for r in records]))
        lat["window"] = (time.perf_counter() - t0) * 1e3
        fm = self.fusion_model
        return EmotionEvent(
            seq=0,
            stream=hc.stream,
            t_start=round(spec.t_start, 4),
            t_end=round(spec.t_end, 4),
            wall_time=0.0,
            probs=probs_d,
            label=label,
            condition=condition,
            modalities=health,
            transcript=transcript,
            tentative=" ".join(w.text for w in tentative),
            words=committed + tentative,
            new_words=st.new,
            asr={"state": st.asr.state, "reason": st.asr.reason},
            face=face,
            latency_ms=lat,
            model=fm.identity,
            trained=fm.trained,
            raw_probs=raw_d,
            experts=experts,
            errors=errors,
            final=spec.final,
        )
