"""One Whisper decoder for many streams: windows that wait at the same time are decoded in one batch.

A server's streams each run their own window loop, so their recognition passes arrive at the shared
model one by one. On a CPU the decoder is latency-bound: batching 8 windows costs about 30 ms a window
against about 100 ms alone (``benchmarks/asr_batching.py``), while the encoder gains nothing from
batching. So ``BatchingRecogniser`` batches the decoder only: each stream's worker thread calls
``decode`` as it would on ``WhisperASR``; a dispatcher thread takes the first waiting request, whatever
else arrives within ``max_wait_ms`` (up to ``max_batch``), and runs them in one
``WhisperASR.decode_batch`` call (each prompt cut to the same length, which CTranslate2 needs to
batch them). Under load, requests queue while a batch runs, so the batches grow by
themselves; a lone stream waits ``max_wait_ms`` at most. Encoding passes straight through.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.backends.batching import gather_batch
from models.encoders.asr import DecodeRequest, WindowDecode

# CTranslate2 batches windows whose prompts have the same length: every stream's prompt is cut to its
# last PROMPT_TOKENS tokens (about 25 words; alone a pass reads up to its 30 prompt words).
PROMPT_TOKENS = 32


class RecogniserTimeout(RuntimeError):
    """A batched decode did not come back in time (the stream marks that pass failed and goes on)."""


@dataclass
class _Request:
    req: DecodeRequest
    done: threading.Event = field(default_factory=threading.Event)
    result: WindowDecode | None = None
    error: BaseException | None = None
    t_submit: float = field(default_factory=time.perf_counter)


@dataclass
class RecogniserStats:
    batches: int = 0
    windows: int = 0
    largest: int = 0

    @property
    def mean_batch(self) -> float:
        return self.windows / self.batches if self.batches else 0.0


class BatchingRecogniser:
    def __init__(
        self, asr: Any, max_batch: int = 16, max_wait_ms: float = 2.0, timeout_s: float = 30.0
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0 or not timeout_s > 0:
            raise ValueError("BatchingRecogniser needs max_batch >= 1, max_wait_ms >= 0 and timeout_s > 0")
        self.asr = asr
        self.max_batch, self.max_wait, self.timeout_s = max_batch, max_wait_ms / 1000.0, float(timeout_s)
        self.stats = RecogniserStats()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="asr-batcher", daemon=True)
        self._thread.start()

    @property
    def cfg(self) -> Any:
        return self.asr.cfg

    def encode(self, audio_16k: np.ndarray) -> np.ndarray:
        return self.asr.encode(audio_16k)

    def decode(
        self,
        encoded: np.ndarray,
        n_samples: int,
        *,
        prompt: str | None = None,
        prefix: str | None = None,
        max_new_tokens: int = 64,
        repeat_limit: int = 3,
    ) -> WindowDecode:
        """Blocking, thread-safe: ``WhisperASR.decode``, in a batch with the other streams' windows."""
        r = _Request(
            DecodeRequest(encoded, n_samples, prompt, prefix, max_new_tokens, repeat_limit, PROMPT_TOKENS)
        )
        with self._lock:
            if self._closed:
                raise RuntimeError("BatchingRecogniser is closed")
            self._queue.put(r)
        if not r.done.wait(self.timeout_s):
            raise RecogniserTimeout(f"the batched Whisper decoder gave no result within {self.timeout_s:g} s")
        if r.error is not None:
            raise r.error
        assert r.result is not None
        return r.result

    def _run(self) -> None:
        while (batch := gather_batch(self._queue, self.max_batch, self.max_wait)) is not None:
            try:
                results = self.asr.decode_batch([r.req for r in batch])
            except Exception as e:  # noqa: BLE001 - every waiting stream gets the error, the batcher goes on
                for r in batch:
                    r.error = e
            else:
                for r, res in zip(batch, results, strict=True):
                    r.result = res
            with self._lock:
                s = self.stats
                s.batches, s.windows, s.largest = (
                    s.batches + 1,
                    s.windows + len(batch),
                    max(s.largest, len(batch)),
                )
            for r in batch:
                r.done.set()

    def close(self) -> None:
        """Finish what is queued, then stop the dispatcher. Safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout=self.timeout_s)
