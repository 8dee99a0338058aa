"""A quiet start: the native libraries' informational lines kept off the terminal (``--verbose`` shows
them). Real warnings and errors still come through.

MediaPipe's LiteRT runtime writes INFO lines and a "tensor memory is not aligned" notice straight to
file descriptor 2, below Python, so no logging setting reaches them. ``NativeStderrFilter`` puts a pipe
on descriptor 2 and forwards every line except those noise lines to the real stderr; Python's own
``sys.stderr`` keeps writing to the terminal directly (a live view still sees a terminal).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import sys
import threading
import warnings

# Informational lines of the native runtimes; anything else on descriptor 2 is forwarded.
NOISE = re.compile(
    rb"^(INFO: |I\d{4} |WARNING: Logging before InitGoogle\(\)|W\d{4} .*Input tensor memory is not aligned)"
)


class NativeStderrFilter:
    def __init__(self, noise: re.Pattern[bytes] = NOISE) -> None:
        self.noise = noise
        self.dropped = 0
        sys.stderr.flush()
        self._terminal = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self._read = read
        sys.stderr = open(os.dup(self._terminal), "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
        self._thread = threading.Thread(target=self._forward, name="stderr-filter", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _forward(self) -> None:
        buf = b""
        while chunk := os.read(self._read, 65536):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if self.noise.match(line):
                    self.dropped += 1
                else:
                    os.write(self._terminal, line + b"\n")
        if buf and not self.noise.match(buf):
            os.write(self._terminal, buf)

    def close(self) -> None:
        """Put the terminal back on descriptor 2 and forward what is left in the pipe."""
        if self._thread is None:
            return
        with contextlib.suppress(OSError):
            os.dup2(self._terminal, 2)  # the pipe's last writer is gone: the thread reads to its end
        self._thread.join(timeout=2.0)
        self._thread = None


def quiet_start() -> NativeStderrFilter | None:
    """Quiet the libraries a first run would otherwise print from (call before the models load)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", message=r".*torchvision is not installed.*")
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the "Loading weights" bar
    try:
        return NativeStderrFilter()
    except OSError:
        return None  # no descriptor 2 to filter (a service manager closed it): nothing to quiet
