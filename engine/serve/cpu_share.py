"""Process CPU time attributed to streams: what one stream costs a server.

The window's work runs on worker threads, the recogniser and the fusion runtime on their own native
thread pools, the media intake on the event loop; no thread belongs to one stream. So the process's
CPU time (``time.process_time``: every thread, user and system) is split instead: each interval's CPU
goes in equal shares to the streams that were open during it. A stream's total is its fair share of
the machine while it ran: the figure capacity planning needs (N streams at c CPU seconds per media
second each need N * c cores). CPU spent while no stream is open (loading, idle polling) is counted
apart as ``idle``.

Sampled when a stream opens, on each of its events and when it closes, from the event loop only.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CpuShare:
    def __init__(self, clock: Callable[[], float] = time.process_time) -> None:
        self._clock = clock
        self._last = clock()
        self._open: dict[int, float] = {}  # stream key -> CPU seconds attributed so far
        self.idle = 0.0  # CPU seconds while no stream was open

    def sample(self) -> float:
        """Attribute the CPU time since the last sample to the open streams; returns how much was
        attributed (0 when none is open: it went to ``idle``)."""
        now = self._clock()
        spent, self._last = max(0.0, now - self._last), now
        if not self._open:
            self.idle += spent
            return 0.0
        share = spent / len(self._open)
        for key in self._open:
            self._open[key] += share
        return spent

    def open(self, key: int) -> None:
        self.sample()
        self._open.setdefault(key, 0.0)

    def seconds(self, key: int) -> float:
        """CPU seconds attributed to an open stream so far (0 for an unknown key)."""
        self.sample()
        return self._open.get(key, 0.0)

    def close(self, key: int) -> float:
        """The stream's total CPU seconds; it gets no share from now on."""
        self.sample()
        return self._open.pop(key, 0.0)

    @property
    def streams(self) -> int:
        return len(self._open)
