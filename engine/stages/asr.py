"""Streaming recognition with a bounded re-decode window: one decoder pass per fusion window.

Each window's pass decodes exactly the window's audio (``window.window_s``, 4 s by default), so a pass
costs the same after an hour as after a second: recognition cannot stall or drift. When the speech
features are the Whisper encoder states of the same model (the offline profile), the pass decodes the
encoder output the speech features already computed: one encoder run per window serves both (over the
window padded to 30 s, or over the window plus ``context_margin_s``, at least ``context_min_s``, when
the profile sets them).
``asr.span_s`` longer than the window makes each pass decode that much audio instead, with an encoder
pass of its own: on the held-out monologue a 12 s span lowers the committed-word WER from 11% to 6%,
but on speech that repeats itself (the same sentence again and again) the forced prefix no longer tells
the decoder where it stops, and whole sentences are lost (docs/engine.md). So the default span is the
window.

Stitching across overlapping windows:

- **Forced prefix.** Words already committed inside the span are forced as the decoder's prefix, and
  the committed words before the span are its prompt; only the words after the prefix are new.
- **Commit rule.** A new word is committed when ``agreement`` consecutive passes agree on it
  (LocalAgreement), when it is about to leave the next pass's span (it would never be heard again), when
  the speech segment ended (the VAD heard ``end_silence_s`` of silence after it), or at the end of the
  stream. The rest is the tentative tail.
- **Guards.** A pass is rejected as a hallucination when the model itself says "no speech"
  (``no_speech_prob`` with a low log-probability) or when its new text compresses too well (a loop);
  a repeated n-gram is cut after its first occurrence; the decoder gets at most ``tokens_per_s`` new
  tokens per second of audio. Windows without speech (VAD) get no pass.
- **No decode without new speech** (``new_speech_only``). Once a pass has heard a segment's speech and
  ``end_silence_s`` of silence after it (so it committed the segment's words), the windows that bring no
  newer voiced VAD chunk get no pass: they would decode the same words again. The pass that hears the
  segment end always runs, so the segment's words are decoded with all of it.
- **Lag policy.** In live mode a pass that would start more than ``max_lag_s`` after its audio arrived
  is skipped (the next window re-hears most of that audio): text then reads "ASR lagging", which is
  not the same as "no speech". The stream's final window is never skipped: it commits the last words.

``StreamingASR`` is synchronous and owns the word lists: the window loop runs one step per window, in
order, and reads the lists between steps. Nothing else writes them.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.config import ASRStreamConfig
from engine.frames import Word

SR = 16000
LEAVE_MARGIN_S = 0.3  # a word ending this close after the next window's start is cut there: commit it


def _key(text: str) -> str:
    return re.sub(r"[^\w']+", "", text.lower())


@dataclass
class ASRPass:
    """What one window's recognition step did."""

    # "decoded" | "no new speech" | "no speech" | "no audio" | "skipped" | "rejected" | "failed" | "disabled"
    state: str
    reason: str = ""  # for skipped / rejected / failed
    new: list[Word] = field(default_factory=list)  # words committed by this step
    ms: float = 0.0  # decoder time (encoder time is counted with the speech features when shared)
    encode_ms: float = 0.0  # encoder time when recognition encoded the window itself


class StreamingASR:
    def __init__(self, recogniser: Any | None, cfg: ASRStreamConfig, hop_s: float, window_s: float) -> None:
        """``window_s``: the audio one pass decodes (the recognition span)."""
        self.rec = recogniser
        self.cfg = cfg
        self.hop_s, self.window_s = hop_s, window_s
        self.enabled = cfg.enabled and recogniser is not None
        self.committed: list[Word] = []
        self.tentative: list[Word] = []
        self.skipped = 0  # passes skipped to keep up (live)
        self.rejected = 0  # passes rejected by a guard
        self.heard_until = -math.inf  # start of the newest voiced VAD chunk a pass has decoded
        self.heard_end = False  # and that pass heard end_silence_s of silence after it

    # -- one window -----------------------------------------------------------------------------------
    def step(
        self,
        t0: float,
        t1: float,
        pcm: np.ndarray,
        *,
        speech: list[tuple[float, float]] | None,
        threshold: float = 0.5,
        encoded: np.ndarray | None = None,
        final: bool = False,
    ) -> ASRPass:
        """Recognise window [t0, t1) whose audio ``pcm`` starts at media time ``t0`` (a gap inside it
        shifts the later word times by its length: dropouts are rare and short).

        ``speech``: VAD (time, prob) per chunk of the window (None: no VAD, every window is decoded).
        ``encoded``: the window's encoder output when the speech features computed it."""
        if not self.enabled:
            return ASRPass("disabled")
        voiced = [t for t, p in speech if p >= threshold] if speech is not None else [t1 - 0.032]
        if not voiced or len(pcm) < 0.1 * SR:
            # Silence (or no audio): the utterance is over; what was heard of it stands.
            new = self._commit(list(self.tentative))
            return ASRPass("no speech" if len(pcm) else "no audio", new=new)
        if (
            self.cfg.new_speech_only
            and speech is not None
            and voiced[-1] <= self.heard_until
            and self.heard_end
        ):
            # The last pass heard this speech and the silence that ended it: a pass now would decode
            # the same words again.
            return ASRPass("no new speech")
        dec, ms, encode_ms = self._decode(t0, pcm, encoded)
        # After the decode: a pass that raised is retried by the next window.
        self.heard_until, self.heard_end = voiced[-1], t1 - (voiced[-1] + 0.032) >= self.cfg.end_silence_s
        last_end = self.committed[-1].end if self.committed else -math.inf
        hyp = [
            Word(w.text.strip(), t0 + w.start, t0 + w.end, w.probability, committed=False)
            for w in dec.words
            if w.text.strip()
        ]
        # Words heard again (a prefix the decoder did not keep) overlap the committed ones: drop them.
        hyp = [w for w in hyp if 0.5 * (w.start + w.end) > last_end]
        why = self._rejected(dec)
        if why:
            self.rejected += 1
            self.tentative = []
            return ASRPass("rejected", why, ms=ms, encode_ms=encode_ms)
        n = self._final_count(hyp, t1, voiced[-1] + 0.032, final)
        new = self._commit(hyp[:n])
        self.tentative = hyp[n:]
        return ASRPass("decoded", new=new, ms=ms, encode_ms=encode_ms)

    def _decode(self, t0: float, pcm: np.ndarray, encoded: np.ndarray | None) -> tuple[Any, float, float]:
        """One recognition pass over the window, prompted by the words committed before it and prefixed
        by those inside it; returns the decode, its ms and the encoder's ms (0 when shared)."""
        encode_ms = 0.0
        if encoded is None:  # no shared encoder output: recognition encodes the window itself
            t_enc = time.perf_counter()
            encoded = self.rec.encode(pcm)
            encode_ms = (time.perf_counter() - t_enc) * 1e3
        inside = [w for w in self.committed if w.start >= t0 + 0.02]
        before = [w for w in self.committed if w.start < t0 + 0.02][-self.cfg.prompt_words :]
        t = time.perf_counter()
        dec = self.rec.decode(
            encoded,
            len(pcm),
            prompt=" ".join(w.text for w in before) or None,
            prefix=" ".join(w.text for w in inside) or None,
            max_new_tokens=int(math.ceil(self.cfg.tokens_per_s * len(pcm) / SR)) + 8,
            repeat_limit=self.cfg.repeat_limit,
        )
        return dec, (time.perf_counter() - t) * 1e3, encode_ms

    def _final_count(self, hyp: list[Word], t1: float, seg_end: float, final: bool) -> int:
        """How many of the hypothesis's first words are final: those two passes agree on (all of them in
        the stream's last window), those that end before the next window starts, and those of a speech
        segment that ended inside the window (``seg_end``)."""
        n = len(hyp) if final or self.cfg.agreement == 1 else self._agreed(hyp)
        leaving = t1 + self.hop_s - self.window_s + LEAVE_MARGIN_S
        while n < len(hyp) and hyp[n].end <= leaving:
            n += 1
        if t1 - seg_end >= self.cfg.end_silence_s:
            while n < len(hyp) and hyp[n].start < seg_end:
                n += 1
        return n

    def skip(self, reason: str) -> ASRPass:
        """No pass for this window (compute is behind); the tentative tail stays for the next pass."""
        self.skipped += 1
        return ASRPass("skipped", reason)

    def fail(self, error: str) -> ASRPass:
        self.tentative = []
        return ASRPass("failed", error)

    def finish(self) -> list[Word]:
        """End of the stream: the tentative tail is all there will be."""
        return self._commit(list(self.tentative))

    def trim(self, before: float) -> None:
        """Forget committed words that end before ``before`` (bounded memory), keeping the prompt."""
        keep = self.cfg.prompt_words
        old = [w for w in self.committed[:-keep] if w.end < before] if keep else []
        if old:
            self.committed = self.committed[len(old) :]

    # -- helpers --------------------------------------------------------------------------------------
    def _rejected(self, dec: Any) -> str:
        c = self.cfg
        if dec.no_speech_prob > c.no_speech_prob and dec.avg_logprob < c.min_logprob:
            return f"no speech (no-speech probability {dec.no_speech_prob:.2f})"
        if dec.compression_ratio > c.max_compression_ratio:
            return f"repetitive output (compression ratio {dec.compression_ratio:.1f})"
        return ""

    def _agreed(self, hyp: list[Word]) -> int:
        """Length of the common prefix of this pass's new words and the previous pass's tentative tail."""
        n = 0
        for a, b in zip(hyp, self.tentative, strict=False):
            if _key(a.text) != _key(b.text):
                break
            n += 1
        return n

    def _commit(self, words: list[Word]) -> list[Word]:
        out = [Word(w.text, w.start, w.end, w.probability, True) for w in words]
        self.committed.extend(out)
        if out:
            self.tentative = [w for w in self.tentative if w.start >= out[-1].end - 1e-3]
        return out
