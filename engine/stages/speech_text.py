"""Speech features and the window's recognition pass (blocking, in the window's worker thread).

With the offline profile the speech features are the Whisper encoder states of the same model the
recogniser runs, so when the recognition span is the window, the window is encoded once: the states
become the audio features and the encoder output goes to the decoder. A span longer than the window
(``asr.span_s``) is encoded by the recogniser itself, with the same short context; so is every window
when the two models differ.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from engine.core.timeline import words_in
from engine.frames import ModalityHealth, Word
from engine.stages.asr import ASRPass, StreamingASR
from models.encoders.kinds import SharedEncoderSpeech

if TYPE_CHECKING:
    from models.encoders.profile import Extractors


@dataclass
class SpeechText:
    """What the audio track gave the window."""

    features: np.ndarray | None  # speech frames, or None (audio unusable or extraction failed)
    error: str  # why feature extraction failed, or ""
    asr: ASRPass
    committed: list[Word]  # committed words of the window (midpoint inside)
    tentative: list[Word]
    new: list[Word]  # words committed by this window's pass
    latency_ms: dict[str, float] = field(default_factory=dict)


class SpeechTextStage:
    def __init__(
        self, extractors: Extractors, asr: StreamingASR, use_tentative: bool, vad_threshold: float
    ) -> None:
        self.ex = extractors
        self.asr = asr
        self.use_tentative = use_tentative
        self.vad_threshold = vad_threshold
        speech = extractors.speech
        # one encoder pass for the speech features and the recognition pass, when they share the encoder
        self.shared = bool(
            asr.enabled and isinstance(speech, SharedEncoderSpeech) and speech.same_encoder(extractors.asr)
        )

    def __call__(
        self,
        t0: float,
        t1: float,
        pcm: np.ndarray,
        pcm_t: float,
        audio: ModalityHealth,
        speech: list[tuple[float, float]] | None,
        skip_asr: str,
        final: bool,
        span: tuple[np.ndarray, float, list[tuple[float, float]] | None] | None = None,
    ) -> SpeechText:
        """``span``: the recognition span's (pcm, first sample's media time, VAD) when it is longer than
        the window; None: recognition decodes the window."""
        lat: dict[str, float] = {}
        feats, encoded, error = None, None, ""
        if audio.usable:
            t = time.perf_counter()
            try:
                if self.shared:
                    feats, encoded = self.ex.speech.encode_window(pcm)
                else:
                    feats = np.asarray(self.ex.speech(pcm), np.float32)
            except Exception as e:  # noqa: BLE001 - an extractor failure is a missing modality
                error = f"{type(e).__name__}: {e}"
            lat["audio_features"] = (time.perf_counter() - t) * 1e3
        try:
            if skip_asr:
                step = self.asr.skip(skip_asr)
            elif span is not None and audio.usable:
                a_pcm, a_t, a_speech = span
                step = self.asr.step(
                    a_t, t1, a_pcm, speech=a_speech, threshold=self.vad_threshold, final=final
                )
            else:
                step = self.asr.step(
                    pcm_t, t1, pcm, speech=speech, threshold=self.vad_threshold, encoded=encoded, final=final
                )
        except Exception as e:  # noqa: BLE001 - a recogniser failure must not stop the stream
            step = self.asr.fail(f"{type(e).__name__}: {e}")
        if final:
            step.new += self.asr.finish()
        if step.ms:
            lat["asr"] = step.ms
        if step.encode_ms:
            lat["asr_encode"] = step.encode_ms
        committed = words_in(self.asr.committed, t0, t1)
        tentative = words_in(self.asr.tentative, t0, t1) if self.use_tentative else []
        return SpeechText(feats, error, step, committed, tentative, step.new, lat)
