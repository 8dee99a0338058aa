"""Streaming ASR stage: feeds audio to the LocalAgreement policy and runs recognition iterations in a
worker thread, without ever blocking the audio path.

Audio is handed over with ``feed`` (cheap, event-loop side). ``run`` waits for enough new audio and
runs one iteration on everything that accumulated: when recognition is slower than real time each
iteration simply covers more audio, and the policy's buffer bound keeps the lag from drifting.
A recogniser exception is recorded (``last_error``) and the stream goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from engine.config import ASRStreamConfig
from engine.frames import Word
from engine.stages.asr_policy import LocalAgreementPolicy, Recogniser


class ASRStage:
    def __init__(self, recogniser: Recogniser | None, cfg: ASRStreamConfig) -> None:
        self.cfg = cfg
        self.enabled = cfg.enabled and recogniser is not None
        self.policy = LocalAgreementPolicy(recogniser, cfg) if self.enabled else None  # type: ignore[arg-type]
        self.committed: list[Word] = []
        self.tentative: list[Word] = []
        self.processed_until = 0.0
        self.last_error = ""
        self.failures: list[tuple[float, float, str]] = []  # (from, to) media span a failed pass covered
        self.errors: list[str] = []
        self.iter_ms: list[float] = []
        self._pending: deque[tuple[np.ndarray, float]] = deque()
        self._wake = asyncio.Event()
        self._ended = False
        self.done = asyncio.Event()

    def feed(self, pcm: np.ndarray, t: float) -> None:
        if not self.enabled:
            return
        self._pending.append((pcm, t))
        self._wake.set()

    def error_for(self, t0: float, t1: float) -> str:
        """The error of a failed recognition pass that covered part of [t0, t1), or ""."""
        for a, b, msg in reversed(self.failures):
            if a < t1 and b > t0:
                return msg
        return ""

    def trim(self, before: float) -> None:
        """Forget words and failures that end before media time ``before`` (bounded memory)."""
        self.committed = [w for w in self.committed if w.end >= before]
        self.failures = [f for f in self.failures if f[1] >= before]
        if self.policy is not None:
            self.policy.trim(before)

    def end(self) -> None:
        self._ended = True
        self._wake.set()

    def _guard(self, fn: Callable[[], None], timed: bool = True) -> None:
        """Run recognition work; a failure is recorded and the stream goes on."""
        assert self.policy is not None
        t0 = time.perf_counter()
        span_start = self.policy.buffer_start
        try:
            fn()
            self.last_error = ""
        except Exception as e:  # noqa: BLE001 - a recogniser failure must not stop the stream
            self.last_error = f"{type(e).__name__}: {e}"
            self.errors.append(self.last_error)
            self.failures.append((span_start, self.policy.buffer_end, self.last_error))
            self.policy.on_error()
            self.tentative = []
        finally:
            self.processed_until = max(self.processed_until, self.policy.processed_until)
            if timed:
                self.iter_ms.append((time.perf_counter() - t0) * 1e3)

    def _drain(self) -> None:
        assert self.policy is not None
        while self._pending:  # deque.popleft is thread-safe against feed() on the loop thread
            pcm, t = self._pending.popleft()
            self.committed += self.policy.insert_audio(pcm, t)  # a gap > 1 s finishes the utterance

    def _step(self) -> None:
        assert self.policy is not None
        self._drain()
        upd = self.policy.process_iter()
        self.committed += upd.committed
        self.tentative = upd.tentative

    def _finish(self) -> None:
        assert self.policy is not None
        self._drain()
        self.committed += self.policy.finish()
        self.tentative = []
        self.policy.processed_until = self.policy.buffer_end

    def _work(self) -> None:
        """Blocking (worker thread): take the new audio and run as many iterations as it allows."""
        assert self.policy is not None
        self._guard(self._drain, timed=False)
        while self.policy.ready():
            self._guard(self._step)

    async def run(self) -> None:
        if not self.enabled:
            self.done.set()
            return
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                ended = self._ended
                await asyncio.to_thread(self._work)
                if ended:
                    await asyncio.to_thread(self._guard, self._finish)
                    return
        finally:
            self.done.set()
