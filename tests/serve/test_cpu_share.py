"""The split of the server's CPU time among its open streams (engine/serve/cpu_share.py)."""

from __future__ import annotations

import time

from engine.serve.cpu_share import CpuShare


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_each_interval_is_split_among_the_streams_open_during_it() -> None:
    clock = Clock()
    cpu = CpuShare(clock)
    clock.t += 2.0  # loading, nobody connected
    cpu.open(1)
    assert cpu.idle == 2.0
    clock.t += 1.0  # stream 1 alone
    cpu.open(2)
    clock.t += 3.0  # both
    assert cpu.sample() == 3.0  # all of it attributed
    assert cpu.seconds(1) == 2.5 and cpu.seconds(2) == 1.5
    clock.t += 1.0
    assert cpu.close(1) == 3.0 and cpu.streams == 1
    clock.t += 2.0  # stream 2 alone again
    assert cpu.close(2) == 4.0 and cpu.close(2) == 0.0  # 1.5 + 0.5 together, 2 alone; then nothing
    clock.t += 1.0
    assert cpu.sample() == 0.0 and cpu.idle == 3.0


def test_real_process_time_goes_to_the_open_stream() -> None:
    cpu = CpuShare()
    cpu.open(7)
    t = time.process_time()
    while time.process_time() - t < 0.05:  # burn 50 ms of CPU
        sum(range(1000))
    assert cpu.close(7) >= 0.05
