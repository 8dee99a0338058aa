"""Timelines that hold recent media per modality, and the window schedule.

Windows are aligned on media time: window k ends at (k + 1) * hop and starts window_s earlier (clipped
at 0, so the first windows are shorter). Everything older than the next window's start is trimmed, so
memory stays bounded however long the stream runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.config import WindowConfig
from engine.frames import Word
from engine.stages.face import FaceRecord
from engine.stages.vad import SpeechProb

SR = 16000


@dataclass
class WindowSpec:
    index: int
    t_start: float
    t_end: float
    final: bool = False

    @property
    def duration(self) -> float:
        return self.t_end - self.t_start


class WindowSchedule:
    def __init__(self, cfg: WindowConfig) -> None:
        self.cfg = cfg
        self.index = 0

    def next_end(self) -> float:
        return round((self.index + 1) * self.cfg.hop_s, 6)

    def take(self) -> WindowSpec:
        end = self.next_end()
        spec = WindowSpec(self.index, max(0.0, round(end - self.cfg.window_s, 6)), end)
        self.index += 1
        return spec

    def is_last(self, media_end: float) -> bool:
        """After the stream ended at ``media_end``: would no window follow the ones taken so far?"""
        return media_end < self.next_end() - 1e-6 and media_end - self.index * self.cfg.hop_s < max(
            self.cfg.min_final_s, 1e-6
        )

    def final(self, media_end: float, force: bool = False) -> WindowSpec | None:
        """The closing window at the end of a stream, if enough new media arrived after the last one
        (``force``: in any case, e.g. to close what is still pending)."""
        last_end = self.index * self.cfg.hop_s
        if media_end - last_end < max(self.cfg.min_final_s, 1e-6) and not force:
            return None
        spec = WindowSpec(self.index, max(0.0, media_end - self.cfg.window_s), media_end, final=True)
        self.index += 1
        return spec


@dataclass
class AudioTimeline:
    """Received 16 kHz chunks (start time, samples), possibly with gaps (dropouts)."""

    chunks: list[tuple[float, np.ndarray]] = field(default_factory=list)
    vad: list[SpeechProb] = field(default_factory=list)
    end: float = 0.0  # media time covered so far

    def append(self, t: float, pcm: np.ndarray) -> None:
        self.chunks.append((t, pcm))
        self.end = max(self.end, t + len(pcm) / SR)

    def slice(self, t0: float, t1: float) -> tuple[np.ndarray, float]:
        """Samples in [t0, t1) concatenated (gaps are skipped), and the covered fraction of the span."""
        parts: list[np.ndarray] = []
        covered = 0
        for t, pcm in self.chunks:
            a = max(0, int(round((t0 - t) * SR)))
            b = min(len(pcm), int(round((t1 - t) * SR)))
            if b > a:
                parts.append(pcm[a:b])
                covered += b - a
        span = max(1, int(round((t1 - t0) * SR)))
        pcm = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return pcm, min(1.0, covered / span)

    def first_sample(self, t0: float, t1: float) -> float:
        """Media time of the first received sample in [t0, t1) (t0 when none): where ``slice`` starts."""
        for t, pcm in self.chunks:
            if t + len(pcm) / SR > t0 and t < t1:
                return max(t0, t)
        return t0

    def speech(self, t0: float, t1: float) -> list[tuple[float, float]]:
        """VAD (chunk start time, speech probability) of the chunks starting in [t0, t1)."""
        return [(p.t, p.prob) for p in self.vad if t0 <= p.t < t1]

    def trim(self, before: float) -> None:
        self.chunks = [(t, p) for t, p in self.chunks if t + len(p) / SR > before]
        self.vad = [p for p in self.vad if p.t >= before - 0.032]


@dataclass
class VideoTimeline:
    records: list[FaceRecord] = field(default_factory=list)
    end: float = 0.0  # media time of the newest analysed frame

    def append(self, rec: FaceRecord) -> None:
        self.records.append(rec)
        self.end = max(self.end, rec.t)

    def slice(self, t0: float, t1: float) -> list[FaceRecord]:
        return [r for r in self.records if t0 <= r.t < t1]

    def trim(self, before: float) -> None:
        self.records = [r for r in self.records if r.t >= before]


def words_in(words: list[Word], t0: float, t1: float) -> list[Word]:
    """The words whose midpoint lies in [t0, t1)."""
    return [w for w in words if t0 <= 0.5 * (w.start + w.end) < t1]
