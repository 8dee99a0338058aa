"""Streaming ASR policy: LocalAgreement-n over a growing audio buffer, with bounded commit lag.

A plain synchronous class (easy to test by replaying a file); the async stage in ``asr.py`` drives it
from a worker thread. The recogniser is anything with ``transcribe(audio_16k, prompt) -> result`` whose
result has ``words`` with ``start``/``end`` (s, relative to the audio given), ``text``, ``probability``
(``models.encoders.asr.WhisperASR``).

Each iteration re-transcribes the audio buffer; words that end before the last committed word are
already committed and skipped. A word is committed once ``agreement`` consecutive hypotheses agree on it
(same prefix after the committed words). The buffer keeps committed audio as context for the recogniser
(cutting mid-utterance makes small models mishear the rest) and is trimmed to the end of the last
committed word once it exceeds half of ``max_buffer_s``. When it would still grow beyond
``max_buffer_s`` (no agreement, or a recogniser that keeps changing its mind) the words that end before
the newest ``step_s`` are force-committed and the buffer is cut: the lag can never drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from engine.config import ASRStreamConfig
from engine.frames import Word

SR = 16000


class Recogniser(Protocol):
    def transcribe(self, audio_16k: np.ndarray, prompt: str | None = None) -> Any: ...


def _norm(text: str) -> str:
    return re.sub(r"[^\w']+", "", text.lower())


@dataclass
class ASRUpdate:
    committed: list[Word] = field(default_factory=list)  # newly committed this iteration
    tentative: list[Word] = field(default_factory=list)  # the current unconfirmed tail
    processed_until: float = 0.0  # media time up to which audio has been transcribed


class LocalAgreementPolicy:
    def __init__(self, recogniser: Recogniser, cfg: ASRStreamConfig | None = None) -> None:
        self.rec = recogniser
        self.cfg = cfg or ASRStreamConfig()
        self.committed: list[Word] = []
        self._buf = np.zeros(0, np.float32)
        self._buf_t = 0.0  # media time of _buf[0]
        self._hyps: list[list[Word]] = []  # last hypotheses after the committed prefix, newest last
        self._unprocessed = 0  # samples inserted since the last iteration
        self.processed_until = 0.0
        self._started = False

    # -- input --------------------------------------------------------------------------------------
    def insert_audio(self, pcm: np.ndarray, t: float) -> list[Word]:
        """Append 16 kHz mono audio starting at media time ``t``. A gap longer than 1 s (a dropout) first
        finishes the current utterance; its words are returned."""
        flushed: list[Word] = []
        end = self._buf_t + len(self._buf) / SR
        if not self._started:
            self._buf_t, self._started = t, True
        elif t - end > 1.0:
            flushed = self.finish()
            self._buf_t = t
        elif t > end + 1.0 / SR:  # short gap: pad with silence so buffer time stays exact
            self._buf = np.concatenate([self._buf, np.zeros(int(round((t - end) * SR)), np.float32)])
        self._buf = np.concatenate([self._buf, np.asarray(pcm, np.float32)])
        self._unprocessed += len(pcm)
        return flushed

    def ready(self) -> bool:
        return self._unprocessed >= self.cfg.step_s * SR and len(self._buf) >= self.cfg.min_audio_s * SR

    @property
    def buffer_start(self) -> float:
        return self._buf_t

    @property
    def buffer_end(self) -> float:
        return self._buf_t + len(self._buf) / SR

    # -- one iteration --------------------------------------------------------------------------------
    def process_iter(self) -> ASRUpdate:
        """Transcribe the buffer (blocking) and commit what the last ``agreement`` hypotheses agree on."""
        self._unprocessed = 0
        self.processed_until = self.buffer_end
        if len(self._buf) < self.cfg.min_audio_s * SR:
            return ASRUpdate([], self.tentative(), self.processed_until)
        # Prompt: committed words before the buffer (those inside it are heard again).
        before = [w for w in self.committed if w.end <= self._buf_t + 1e-3][-self.cfg.prompt_words :]
        prompt = " ".join(w.text.strip() for w in before) or None
        result = self.rec.transcribe(self._buf, prompt=prompt)
        last_end = self.committed[-1].end if self.committed else -1e9
        hyp = [
            Word(
                w.text.strip(),
                self._buf_t + float(w.start),
                self._buf_t + float(w.end),
                float(getattr(w, "probability", 1.0)),
                committed=False,
            )
            for w in result.words
            if w.text.strip()
        ]
        # Words starting before the last committed word ended are already committed.
        hyp = [w for w in hyp if w.start > last_end - 0.1]
        hyp = self._drop_overlap(hyp)
        self._hyps = (self._hyps + [hyp])[-self.cfg.agreement :]
        new = self._agree() if len(self._hyps) >= self.cfg.agreement else []
        if self.cfg.agreement == 1:
            new = list(hyp)
        new += self._bound_lag()
        self._commit(new)
        return ASRUpdate(new, self.tentative(), self.processed_until)

    def finish(self) -> list[Word]:
        """End of the stream (or a dropout): transcribe what is left and commit the newest hypothesis."""
        new: list[Word] = []
        if self._unprocessed and len(self._buf) >= self.cfg.min_audio_s * SR:
            new = self.process_iter().committed
        rest = [
            Word(w.text, w.start, w.end, w.probability, True) for w in (self._hyps[-1] if self._hyps else [])
        ]
        self._commit(rest)
        self._hyps = []
        end = self.buffer_end
        self._buf = np.zeros(0, np.float32)
        self._buf_t = end
        self._unprocessed = 0
        self.processed_until = end
        return new + rest

    def trim(self, before: float) -> None:
        """Drop committed words ending before ``before``, keeping the prompt's worth of history."""
        keep = max(self.cfg.prompt_words, 5)
        old = [w for w in self.committed[:-keep] if w.end < before]
        if old:
            self.committed = self.committed[len(old):]

    def on_error(self) -> None:
        """After a recogniser failure: forget the hypotheses and keep only the newest step of audio, so
        that a persistent failure cannot grow the buffer."""
        self._hyps = []
        self._cut(self.buffer_end - self.cfg.step_s)

    def tentative(self) -> list[Word]:
        return list(self._hyps[-1]) if self._hyps else []

    # -- helpers ------------------------------------------------------------------------------------
    def _drop_overlap(self, hyp: list[Word]) -> list[Word]:
        """Drop a leading n-gram (n <= 5) that repeats the tail of the committed words."""
        tail = [_norm(w.text) for w in self.committed[-5:]]
        head = [_norm(w.text) for w in hyp[:5]]
        for n in range(min(len(tail), len(head)), 0, -1):
            if tail[-n:] == head[:n]:
                return hyp[n:]
        return hyp

    def _agree(self) -> list[Word]:
        """Longest common prefix (by normalised text) of the last ``agreement`` hypotheses."""
        out: list[Word] = []
        newest = self._hyps[-1]
        for i, w in enumerate(newest):
            if all(len(h) > i and _norm(h[i].text) == _norm(w.text) for h in self._hyps[:-1]):
                out.append(Word(w.text, w.start, w.end, w.probability, True))
            else:
                break
        return out

    def _bound_lag(self) -> list[Word]:
        """Force-commit when the uncommitted buffer exceeds max_buffer_s; else nothing."""
        if len(self._buf) / SR <= self.cfg.max_buffer_s:
            return []
        newest = self._hyps[-1] if self._hyps else []
        horizon = self.buffer_end - self.cfg.step_s
        agreed = len(self._agree()) if len(self._hyps) >= self.cfg.agreement else 0
        forced = [
            Word(w.text, w.start, w.end, w.probability, True) for w in newest[agreed:] if w.end <= horizon
        ]
        if not forced and not agreed:
            # No words at all in an over-long buffer (silence, noise): keep only the newest step.
            self._cut(horizon)
        return forced

    def _commit(self, words: list[Word]) -> None:
        if not words:
            return
        self.committed.extend(words)
        n = len(words)
        # Remaining hypotheses lose the committed prefix (aligned by position after agreement).
        self._hyps = [h[n:] if len(h) >= n else [] for h in self._hyps]
        if len(self._buf) / SR > self.cfg.max_buffer_s / 2:
            self._cut(words[-1].end)

    def _cut(self, t: float) -> None:
        k = int(round((t - self._buf_t) * SR))
        if k <= 0:
            return
        k = min(k, len(self._buf))
        self._buf = self._buf[k:]
        self._buf_t += k / SR
