"""Batch fusion across many concurrent streams in one process.

Each stream awaits ``batcher.infer(sample)`` for its window; the batcher collects requests until
``max_batch`` are waiting or ``max_wait_ms`` has passed since the first one, pads them into one
``FusionInputs`` and runs the backend once, off the event loop. Results go back to each caller in
order. With ``max_batch=1`` it degrades to one call per window (the baseline that
benchmarks/multistream.py compares against).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np

from .backends.base import FusionBackend, FusionInputs


@dataclass
class BatchStats:
    batches: int = 0
    windows: int = 0
    sizes: list[int] = field(default_factory=list)

    @property
    def mean_batch(self) -> float:
        return self.windows / self.batches if self.batches else 0.0


@dataclass
class _Request:
    sample: dict[str, np.ndarray]
    future: asyncio.Future
    t_submit: float


class FusionBatcher:
    def __init__(self, backend: FusionBackend, dims: dict[str, int], max_batch: int = 64,
                 max_wait_ms: float = 2.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.backend = backend
        self.dims = dims
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._worker: asyncio.Task | None = None

    async def __aenter__(self) -> FusionBatcher:
        self._worker = asyncio.create_task(self._run(), name="fusion-batcher")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def infer(self, sample: dict[str, np.ndarray]) -> np.ndarray:
        """Probabilities [C] for one window: sample maps each modality to [L, D] and "avail" to [3]."""
        if self._worker is None:
            raise RuntimeError("use FusionBatcher inside 'async with'")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(sample, fut, time.perf_counter()))
        return await fut

    async def _collect(self) -> list[_Request]:
        first = await self._queue.get()
        batch = [first]
        deadline = first.t_submit + self.max_wait
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), timeout=remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            try:
                inputs = FusionInputs.from_samples([r.sample for r in batch], self.dims)
                result = await asyncio.to_thread(self.backend.infer, inputs)
            except Exception as e:  # noqa: BLE001 - every waiting stream must learn of the failure
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(e)
                continue
            self.stats.batches += 1
            self.stats.windows += len(batch)
            self.stats.sizes.append(len(batch))
            for i, r in enumerate(batch):
                if not r.future.done():
                    r.future.set_result(result.probs[i])
