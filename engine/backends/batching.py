"""Batch fusion across many concurrent streams in one process.

``BatchingBackend`` wraps any backend and is itself a backend, so several ``Engine`` instances (one per
stream) can share it: ``Engine(cfg, sources, backend=shared)``. Each engine calls ``infer`` from its own
worker thread; a single batching thread collects the waiting windows until ``max_batch`` rows are queued
or ``max_wait_ms`` has passed since the first, pads them into one batch, runs the wrapped backend once,
and hands every caller its own rows. A failure reaches every caller of that batch. With
``max_batch=1`` it degrades to one call per window (the baseline benchmarks/multistream.py compares with).

Each waiting window holds a thread, so give the event loop an executor with at least as many workers as
streams (``loop.set_default_executor(ThreadPoolExecutor(max_workers=N + 4))``): asyncio's default has
min(32, CPUs + 4) workers, which caps how many windows can wait together.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from .base import FusionBackend, FusionInputs, FusionResult


@dataclass
class BatchStats:
    batches: int = 0
    windows: int = 0
    # The most recent batch sizes only: a server's backend runs for days.
    sizes: deque[int] = field(default_factory=lambda: deque(maxlen=4096))

    @property
    def mean_batch(self) -> float:
        return self.windows / self.batches if self.batches else 0.0


class _Request:
    __slots__ = ("done", "error", "inputs", "result", "t_submit")

    def __init__(self, inputs: FusionInputs) -> None:
        self.inputs = inputs
        self.done = threading.Event()
        self.result: FusionResult | None = None
        self.error: BaseException | None = None
        self.t_submit = time.perf_counter()


class BatchingBackend(FusionBackend):
    name = "batching"

    def __init__(self, inner: FusionBackend, max_batch: int = 64, max_wait_ms: float = 2.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        super().__init__(inner.model_id)
        self.inner = inner
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.stats = BatchStats()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()  # orders "closed?" + enqueue against stop()'s closing sentinel
        self._thread = threading.Thread(target=self._run, name="fusion-batcher", daemon=True)
        self._thread.start()

    def infer(self, inputs: FusionInputs) -> FusionResult:
        """Blocking, thread-safe: returns this caller's rows once its batch has run."""
        req = _Request(inputs)
        with self._lock:  # a request is either queued before the closing sentinel, or refused
            if self._closed:
                raise RuntimeError("BatchingBackend is closed")
            self._queue.put(req)
        req.done.wait()
        if req.error is not None:
            raise req.error
        assert req.result is not None
        return req.result

    def _collect(self) -> list[_Request] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch, rows = [first], first.inputs.batch
        deadline = first.t_submit + self.max_wait
        while rows < self.max_batch:
            remaining = deadline - time.perf_counter()
            try:
                nxt = self._queue.get_nowait() if remaining <= 0 else self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if nxt is None:  # closing: finish this batch, then stop
                self._queue.put(None)
                break
            batch.append(nxt)
            rows += nxt.inputs.batch
        return batch

    def _run(self) -> None:
        while (batch := self._collect()) is not None:
            try:
                res = self.inner.infer(FusionInputs.concat([r.inputs for r in batch]))
                start = 0
                for r in batch:
                    n = r.inputs.batch
                    r.result = FusionResult(logits=res.logits[start:start + n], probs=res.probs[start:start + n])
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
        return {**self.inner.describe(), "batching": f"max_batch={self.max_batch}, max_wait_ms={self.max_wait * 1e3:g}"}
