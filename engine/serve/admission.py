"""Admission control: a new stream is admitted only under the configured maximum and while the measured
load leaves room (recent e2e p95 within budget, this process not saturating the CPU, and, with
``forecast``, room on the cores for one more stream at the CPU share the running ones take). A refusal
says which limit was hit; admitted streams are never slowed down to make room.

The forecast learns one stream's share of the cores from the process's CPU use while the number of
streams stood still for ``settle_s`` (CPU seconds per wall second / cores / streams), and keeps the last
value for the moments just after a change. One more stream is refused when (streams + 1) x that share
would pass ``max_cpu``: on a machine where one stream fills half the cores, the second waits, instead of
both falling behind."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Decision:
    admitted: bool
    reason: str = ""  # why not ("" when admitted)
    kind: str = ""  # metric label: capacity | latency | cpu


class LoadMonitor:
    """Recent per-event e2e latencies (all streams) and this process's CPU use over ``window_s``."""

    def __init__(
        self,
        window_s: float = 10.0,
        cores: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self.window_s = window_s
        self.clock, self.cpu_clock = clock, cpu_clock
        if cores is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.cores = cores
        self._lat: deque[tuple[float, float]] = deque(maxlen=100_000)
        self._cpu: deque[tuple[float, float]] = deque(maxlen=10_000)
        self.sample_cpu()

    def observe(self, e2e_ms: float, now: float | None = None) -> None:
        self._lat.append((self.clock() if now is None else now, float(e2e_ms)))

    def sample_cpu(self, now: float | None = None) -> None:
        self._cpu.append((self.clock() if now is None else now, self.cpu_clock()))

    def _trim(self, now: float) -> None:
        while self._lat and self._lat[0][0] < now - self.window_s:
            self._lat.popleft()
        while len(self._cpu) > 2 and self._cpu[1][0] < now - self.window_s:
            self._cpu.popleft()

    def e2e_p95_ms(self, now: float | None = None) -> float | None:
        now = self.clock() if now is None else now
        self._trim(now)
        if len(self._lat) < 5:
            return None
        return float(np.percentile([v for _, v in self._lat], 95))

    def cpu_fraction(self, now: float | None = None, since: float | None = None) -> float | None:
        """CPU seconds per wall second over the window (or since ``since``, when later), as a fraction of
        all cores."""
        now = self.clock() if now is None else now
        self.sample_cpu(now)
        self._trim(now)
        first = self._cpu[0]
        if since is not None:
            first = next((c for c in self._cpu if c[0] >= since), self._cpu[-1])
        (t0, c0), (t1, c1) = first, self._cpu[-1]
        if t1 - t0 < 1.0:
            return None
        return (c1 - c0) / (t1 - t0) / self.cores


class Admission:
    def __init__(
        self,
        max_streams: int,
        e2e_budget_ms: float,
        max_cpu: float,
        monitor: LoadMonitor,
        forecast: bool = False,
        settle_s: float = 5.0,
    ) -> None:
        self.max_streams = max_streams
        self.e2e_budget_ms = e2e_budget_ms
        self.max_cpu = max_cpu
        self.monitor = monitor
        self.forecast = forecast
        self.settle_s = settle_s
        self.active = 0
        self.stream_share: float | None = None  # one stream's measured share of all cores
        self._changed_at = monitor.clock()

    def _changed(self) -> None:
        self._changed_at = self.monitor.clock()
        self.monitor.sample_cpu(self._changed_at)

    def learn_share(self, now: float | None = None) -> float | None:
        """Update one stream's share of the cores from the CPU used since the stream count last changed
        (once it has stood still for ``settle_s``); returns the share known now."""
        now = self.monitor.clock() if now is None else now
        if self.active > 0 and now - self._changed_at >= self.settle_s:
            cpu = self.monitor.cpu_fraction(now, since=self._changed_at)
            if cpu is not None:
                self.stream_share = cpu / self.active
        return self.stream_share

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
        share = self.learn_share() if self.forecast else None
        if share is not None and (self.active + 1) * share > self.max_cpu:
            return Decision(
                False,
                f"server full: each of the {self.active} running streams takes about {100 * share:.0f}% of "
                f"the {self.monitor.cores} cores; one more would bring them to "
                f"{100 * (self.active + 1) * share:.0f}%, over {100 * self.max_cpu:.0f}%",
                "cpu_forecast",
            )
        return Decision(True)

    def try_admit(self) -> Decision:
        """Check and, when admitted, count the stream in (call ``release`` when it ends)."""
        d = self.check()
        if d.admitted:
            self.active += 1
            self._changed()
        return d

    def release(self) -> None:
        self.active = max(0, self.active - 1)
        self._changed()
