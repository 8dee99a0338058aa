"""Window processing (blocking, worker thread): the window's steps in order (``window_steps``: modality
health, speech features and the window's recognition pass, text and face features with their checks,
fusion with reconstruction, smoothing, the experts' readings), then the EmotionEvent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.config import EngineConfig
from engine.core.timeline import WindowSpec
from engine.frames import EmotionEvent, ModalityHealth
from engine.stages.asr import StreamingASR
from engine.stages.fusion import FusionModel, FusionStage
from engine.stages.speech_text import SpeechTextStage
from engine.stages.window_steps import (
    ExpertStep,
    FeatureStep,
    FusionStep,
    HealthStep,
    SmoothingStep,
    SpeechTextStep,
    Step,
    WindowInputs,
    WindowState,
    window_event,
)
from models.modalities import MODALITIES

if TYPE_CHECKING:
    from models.encoders.profile import Extractors

__all__ = ["WindowInputs", "WindowProcessor"]


class WindowProcessor:
    """One stream's window work: its steps (each holds its own state: the ASR's, the smoother's)."""

    def __init__(
        self,
        cfg: EngineConfig,
        extractors: Extractors,
        fusion: FusionStage,
        fusion_model: FusionModel,
        vad_enabled: bool,
        asr: StreamingASR,
    ) -> None:
        self.cfg = cfg
        self.fusion_model = fusion_model
        self.asr = asr
        speech_text = SpeechTextStage(
            extractors, asr, cfg.text_health.use_tentative, cfg.audio_health.vad_threshold
        )
        self.steps: list[Step] = [
            HealthStep(cfg, vad_enabled),
            SpeechTextStep(cfg, speech_text, vad_enabled),
            FeatureStep(extractors),
            FusionStep(fusion),
            SmoothingStep(cfg.ema_alpha),
        ]
        if cfg.expert:
            self.steps.append(ExpertStep(extractors, fusion_model))

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
        """Blocking (worker thread): every step on one window, then its event."""
        state = WindowState(w)
        for step in self.steps:
            step(state)
        return window_event(state, self.cfg.stream, self.fusion_model)
