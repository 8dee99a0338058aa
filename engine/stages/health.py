"""Modality health per window: is each modality usable, and if not, why.

Pure functions of the window's measurements, so each rule is easy to test. They return "present" or
"missing" with a reason; the fusion stage turns "missing" into "reconstructed" when CM-ARR rebuilt the
modality from the others.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.config import AudioHealthConfig, TextHealthConfig, VideoHealthConfig
from engine.frames import ModalityHealth, Word
from engine.stages.face import FaceRecord


def _missing(reason: str, **stats: float) -> ModalityHealth:
    return ModalityHealth("missing", reason, {k: float(v) for k, v in stats.items()})


def audio_health(
    pcm: np.ndarray,
    coverage: float,
    speech_probs: list[float],
    cfg: AudioHealthConfig,
    source_reason: str = "",
    vad_enabled: bool = True,
) -> ModalityHealth:
    """pcm: the window's 16 kHz samples; coverage: received fraction of the window (0..1);
    speech_probs: VAD probability per 32 ms chunk; source_reason: why the source is down, if it is."""
    if len(pcm) == 0:
        return _missing(
            f"dropout: {source_reason}" if source_reason else "dropout: no audio received", coverage=0.0
        )
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64))))
    dbfs = 20.0 * math.log10(max(rms, 1e-10))
    clip = float(np.mean(np.abs(pcm) >= cfg.clip_level))
    speech = float(np.mean(np.asarray(speech_probs) >= cfg.vad_threshold)) if speech_probs else 0.0
    stats = {"coverage": coverage, "dbfs": dbfs, "clip_ratio": clip, "speech_ratio": speech}
    if coverage < cfg.min_coverage:
        why = (
            f"dropout: {source_reason}"
            if source_reason
            else f"dropout: {coverage:.0%} of the window received"
        )
        return _missing(why, **stats)
    if not np.all(np.isfinite(pcm)):
        return _missing("invalid samples (NaN/inf)", **stats)
    if clip > cfg.max_clip_ratio:
        return _missing(f"clipping: {clip:.1%} of samples at full scale", **stats)
    if dbfs < cfg.silence_dbfs:
        return _missing(f"silence: {dbfs:.0f} dBFS", **stats)
    if vad_enabled and speech < cfg.min_speech_ratio:
        return _missing("silence: no speech detected (VAD)", **stats)
    return ModalityHealth("present", "", stats)


def video_health(
    records: list[FaceRecord], duration: float, cfg: VideoHealthConfig, source_reason: str = ""
) -> ModalityHealth:
    """records: the window's analysed frames; duration: window length (s)."""
    n = len(records)
    if n == 0:
        return _missing(f"no frames: {source_reason}" if source_reason else "no frames received", frames=0)
    fps = n / max(duration, 1e-6)
    face_ratio = sum(r.present for r in records) / n
    luma = float(np.mean([r.luma for r in records]))
    motions = [r.motion for r in records if math.isfinite(r.motion)]
    faces = [r for r in records if r.present]
    score = float(np.median([r.score for r in faces])) if faces else 0.0
    loss = float(np.mean([r.landmark_loss for r in faces])) if faces else 1.0
    stats = {
        "frames": n,
        "fps": fps,
        "face_ratio": face_ratio,
        "luma": luma,
        "score": score,
        "landmark_loss": loss,
        "motion": float(np.max(motions)) if motions else 0.0,
    }
    failed = [r for r in records if r.error]
    if len(failed) * 2 >= n:
        return _missing(f"face analysis failed: {failed[-1].error}", **stats)
    dark = sum(r.luma < cfg.dark_luma for r in records) / n
    if dark > 0.5:
        return _missing(f"dark frames: mean luma {luma:.0f}", **stats)
    if motions and len(motions) >= 2 and max(motions) < cfg.frozen_diff:
        return _missing("frozen frames: no change between frames", **stats)
    if fps < cfg.min_fps:
        return _missing(f"frame-rate collapse: {fps:.1f} fps", **stats)
    if face_ratio < cfg.min_face_ratio:
        return _missing(f"no face in {1 - face_ratio:.0%} of frames", **stats)
    if score < cfg.occlusion_score:
        return _missing(f"occluded: detection score {score:.2f}", **stats)
    if loss > cfg.max_landmark_loss:
        return _missing(f"occluded: {loss:.0%} of landmarks lost", **stats)
    return ModalityHealth("present", "", stats)


def text_health(
    committed: list[Word],
    tentative: list[Word],
    cfg: TextHealthConfig,
    audio: ModalityHealth,
    asr: Any = None,
    asr_enabled: bool = True,
) -> ModalityHealth:
    """``asr``: the window's recognition pass (``engine.stages.asr.ASRPass``: state and reason)."""
    n_c, n_t = len(committed), len(tentative)
    stats = {"committed_words": n_c, "tentative_words": n_t}
    if not asr_enabled:
        return _missing("speech recognition disabled", **stats)
    if not audio.usable and not audio.reason.startswith("clipping"):
        # Words over silence or a dropout are recogniser hallucinations or leftovers, not speech.
        return _missing(f"no speech ({audio.reason.split(':')[0]})", **stats)
    usable = n_c + (n_t if cfg.use_tentative else 0)
    if usable >= cfg.min_words:
        return ModalityHealth("present", "", stats)
    state, why = getattr(asr, "state", ""), getattr(asr, "reason", "")
    if state == "failed":
        return _missing(f"asr error: {why}", **stats)
    if state == "skipped":
        return _missing(why or "ASR lagging", **stats)
    if state == "rejected":
        return _missing(f"no words: recognition rejected ({why})", **stats)
    return _missing("no words recognised", **stats)
