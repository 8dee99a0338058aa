"""Batch fusion across many concurrent streams in one process.

``BatchingBackend`` wraps any backend and is itself a backend, so several ``Engine`` instances (one per
stream) can share it: ``Engine(cfg, sources, backend=shared)``. Each engine calls ``infer`` from its own
worker thread; a single batching thread collects the waiting windows until ``max_batch`` rows are queued
or ``max_wait_ms`` has passed since the first, pads them into one batch, runs the wrapped backend once,
and hands every caller its own rows. A failure reaches every caller of that batch. With
``max_batch=1`` it degrades to one call per window (the baseline benchmarks/multistream.py compares with).

A hung backend holds no caller forever: ``infer`` raises ``BackendTimeout`` when its rows are not back
within ``timeout_s``, and the window is abandoned (skipped if it has not run yet). ``stalled_s()`` says
how long the wrapped backend's current call has run, and ``health()`` reports the batcher stuck while
that exceeds ``timeout_s`` (a server's ``/healthz`` reads it through ``SharedModels.health``); it is
healthy again once the call returns.

Each waiting window holds a thread, so give the event loop an executor with at least as many workers as
streams (``loop.set_default_executor(ThreadPoolExecutor(max_workers=N + 4))``): asyncio's default has
min(32, CPUs + 4) workers, which caps how many windows can wait together.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.backends.base import FusionBackend, FusionInputs, FusionResult


def gather_batch(
    q: queue.Queue, limit: int, wait_s: float, size: Callable[[Any], int] = lambda r: 1
) -> list | None:
    """A batching thread's next batch: the first queued request (None, the closing sentinel: None), then
    whatever else arrives within ``wait_s`` of its ``t_submit``, until the sizes sum to ``limit``. A
    sentinel met on the way is put back, so the batch runs and the thread stops after it."""
    first = q.get()
    if first is None:
        return None
    batch, total = [first], size(first)
    deadline = first.t_submit + wait_s
    while total < limit:
        remaining = deadline - time.perf_counter()
        try:
            nxt = q.get_nowait() if remaining <= 0 else q.get(timeout=remaining)
        except queue.Empty:
            break
        if nxt is None:
            q.put(None)
            break
        batch.append(nxt)
        total += size(nxt)
    return batch


class BackendTimeout(TimeoutError):
    """A fusion call that did not return within the batching backend's ``timeout_s``."""


@dataclass
class BatchStats:
    batches: int = 0
    windows: int = 0
    timeouts: int = 0  # callers that gave up waiting (BackendTimeout)
    # The most recent batch sizes only: a server's backend runs for days.
    sizes: deque[int] = field(default_factory=lambda: deque(maxlen=4096))

    @property
    def mean_batch(self) -> float:
        return self.windows / self.batches if self.batches else 0.0


class _Request:
    __slots__ = ("abandoned", "done", "error", "inputs", "result", "t_submit")

    def __init__(self, inputs: FusionInputs) -> None:
        self.inputs = inputs
        self.done = threading.Event()
        self.result: FusionResult | None = None
        self.error: BaseException | None = None
        self.t_submit = time.perf_counter()
        self.abandoned = False  # its caller timed out: not worth running


class BatchingBackend(FusionBackend):
    name = "batching"

    def __init__(
        self, inner: FusionBackend, max_batch: int = 64, max_wait_ms: float = 2.0, timeout_s: float = 30.0
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        super().__init__(inner.model_id)
        self.inner = inner
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.timeout_s = float(timeout_s)
        self.stats = BatchStats()
        self._call_started: float | None = None  # perf_counter() when the running inner call began
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()  # orders "closed?" + enqueue against stop()'s closing sentinel
        self._thread = threading.Thread(target=self._run, name="fusion-batcher", daemon=True)
        self._thread.start()

    def infer(self, inputs: FusionInputs) -> FusionResult:
        """Blocking, thread-safe: returns this caller's rows once its batch has run. Raises
        BackendTimeout when they are not back within ``timeout_s`` of the call."""
        req = _Request(inputs)
        with self._lock:  # a request is either queued before the closing sentinel, or refused
            if self._closed:
                raise RuntimeError("BatchingBackend is closed")
            self._queue.put(req)
        if not req.done.wait(self.timeout_s):
            req.abandoned = True
            with self._lock:
                self.stats.timeouts += 1
            stalled = self.stalled_s()
            running = f"; its current call has run {stalled:.1f} s" if stalled is not None else ""
            raise BackendTimeout(
                f"the {self.inner.name} fusion backend gave no result within {self.timeout_s:g} s{running}"
            )
        if req.error is not None:
            raise req.error
        assert req.result is not None
        return req.result

    def _collect(self) -> list[_Request] | None:
        return gather_batch(self._queue, self.max_batch, self.max_wait, lambda r: r.inputs.batch)

    def _run(self) -> None:
        while (collected := self._collect()) is not None:
            batch = [r for r in collected if not r.abandoned]  # their callers have given up
            if not batch:
                continue
            try:
                self._call_started = time.perf_counter()
                try:
                    res = self.inner.infer(FusionInputs.concat([r.inputs for r in batch]))
                finally:
                    self._call_started = None
                start = 0
                for r in batch:
                    n = r.inputs.batch
                    rows = slice(start, start + n)
                    r.result = FusionResult(logits=res.logits[rows], probs=res.probs[rows])
                    start += n
                self.stats.batches += 1
                self.stats.windows += start
                self.stats.sizes.append(start)
            except Exception as e:  # noqa: BLE001 - every waiting stream must learn of the failure
                for r in batch:
                    r.error = e
            finally:
                for r in batch:
                    r.done.set()

    def stalled_s(self) -> float | None:
        """How long the wrapped backend's current call has run (seconds); None when none is running."""
        started = self._call_started
        return None if started is None else time.perf_counter() - started

    def health(self) -> tuple[bool, str]:
        """(ok, reason). Not ok while the wrapped backend's current call has run longer than
        ``timeout_s`` (stuck: every window waits behind it), when the batching thread has died, or
        once stopped. The reason is empty when ok."""
        if self._closed:
            return False, f"the {self.inner.name} fusion backend is closed"
        if not self._thread.is_alive():
            return False, f"the {self.inner.name} fusion batching thread has stopped"
        stalled = self.stalled_s()
        if stalled is not None and stalled > self.timeout_s:
            return False, (
                f"the {self.inner.name} fusion backend is stuck: its current call has run {stalled:.1f} s "
                f"(timeout {self.timeout_s:g} s)"
            )
        return self.inner.health()

    def stop(self) -> None:
        """Finish the queued windows and stop batching; the wrapped backend stays open."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout=10)

    def close(self) -> None:
        self.stop()
        self.inner.close()

    def describe(self) -> dict[str, str]:
        batching = f"max_batch={self.max_batch}, max_wait_ms={self.max_wait * 1e3:g}"
        return {**self.inner.describe(), "batching": f"{batching}, timeout_s={self.timeout_s:g}"}
