"""Admission control: a new stream is admitted only under the configured maximum and while the measured
load leaves room (recent e2e p95 within budget, this process not saturating the CPU). A refusal says
which limit was hit; admitted streams are never slowed down to make room."""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Decision:
    admitted: bool
    reason: str = ""  # why not ("" when admitted)
    kind: str = ""  # metric label: capacity | latency | cpu


class LoadMonitor:
    """Recent per-event e2e latencies (all streams) and this process's CPU use over ``window_s``."""

    def __init__(self, window_s: float = 10.0, cores: int | None = None) -> None:
        self.window_s = window_s
        if cores is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.cores = cores
        self._lat: deque[tuple[float, float]] = deque(maxlen=100_000)
        self._cpu: deque[tuple[float, float]] = deque(maxlen=10_000)
        self.sample_cpu()

    def observe(self, e2e_ms: float, now: float | None = None) -> None:
        self._lat.append((time.monotonic() if now is None else now, float(e2e_ms)))

    def sample_cpu(self, now: float | None = None) -> None:
        self._cpu.append((time.monotonic() if now is None else now, time.process_time()))

    def _trim(self, now: float) -> None:
        while self._lat and self._lat[0][0] < now - self.window_s:
            self._lat.popleft()
        while len(self._cpu) > 2 and self._cpu[1][0] < now - self.window_s:
            self._cpu.popleft()

    def e2e_p95_ms(self, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        self._trim(now)
        if len(self._lat) < 5:
            return None
        return float(np.percentile([v for _, v in self._lat], 95))

    def cpu_fraction(self, now: float | None = None) -> float | None:
        """CPU seconds per wall second over the window, as a fraction of all cores."""
        now = time.monotonic() if now is None else now
        self.sample_cpu(now)
        self._trim(now)
        (t0, c0), (t1, c1) = self._cpu[0], self._cpu[-1]
        if t1 - t0 < 1.0:
            return None
        return (c1 - c0) / (t1 - t0) / self.cores


class Admission:
    def __init__(self, max_streams: int, e2e_budget_ms: float, max_cpu: float, monitor: LoadMonitor) -> None:
        self.max_streams = max_streams
        self.e2e_budget_ms = e2e_budget_ms
        self.max_cpu = max_cpu
        self.monitor = monitor
        self.active = 0

    def check(self) -> Decision:
        if self.active >= self.max_streams:
            return Decision(
                False, f"server at capacity: {self.active} of {self.max_streams} streams running", "capacity"
            )
        if self.active == 0:  # the load of finished streams is not a reason to refuse the first one
            return Decision(True)
        p95 = self.monitor.e2e_p95_ms()
        if p95 is not None and p95 > self.e2e_budget_ms:
            return Decision(
                False,
                f"server loaded: e2e p95 {p95:.0f} ms over the last {self.monitor.window_s:.0f} s exceeds "
                f"{self.e2e_budget_ms:.0f} ms",
                "latency",
            )
        cpu = self.monitor.cpu_fraction()
        if cpu is not None and cpu > self.max_cpu:
            return Decision(
                False,
                f"server loaded: CPU {100 * cpu:.0f}% of {self.monitor.cores} cores over the last "
                f"{self.monitor.window_s:.0f} s exceeds {100 * self.max_cpu:.0f}%",
                "cpu",
            )
        return Decision(True)

    def try_admit(self) -> Decision:
        """Check and, when admitted, count the stream in (call ``release`` when it ends)."""
        d = self.check()
        if d.admitted:
            self.active += 1
        return d

    def release(self) -> None:
        self.active = max(0, self.active - 1)
