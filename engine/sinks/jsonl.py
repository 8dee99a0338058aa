"""One JSON object per line per event, in a file that is not overwritten by accident.

- **Mode.** ``new`` (default) refuses a file that exists and is not empty, ``append`` adds to it
  (after a newline if its last line was cut off), ``overwrite`` replaces it. ``check()`` applies the
  rule at once, so a program can refuse before it loads any model.
- **Durability.** Each line is flushed as it is written, so a crash of the process loses at most the
  line being written. The file is fsynced every ``fsync_s`` seconds while events are written, and
  on close, so a power cut loses at most about that much.
- **Failure.** A write that fails (a full disk, a lost network share) raises one ``OSError`` that names
  the event and the file. The sink is ``fatal``: the runner stops the stream there instead of
  carrying on without a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from pathlib import Path
from typing import IO

from engine.frames import EmotionEvent
from engine.sinks.base import Sink

MODES = ("new", "append", "overwrite")


class JSONLSink(Sink):
    name = "jsonl"
    fatal = True

    def __init__(self, path: str | Path, mode: str = "new", fsync_s: float | None = 5.0) -> None:
        """``mode``: new | append | overwrite (above). ``fsync_s``: seconds between fsyncs while
        writing (0: after every event; None: on close only)."""
        if mode not in MODES:
            raise ValueError(f"JSONLSink mode must be one of {', '.join(MODES)}, not {mode!r}")
        if fsync_s is not None and fsync_s < 0:
            raise ValueError(f"JSONLSink fsync_s must be >= 0 or None, not {fsync_s}")
        self.path = Path(path)
        self.mode = mode
        self.fsync_s = fsync_s
        self.failed = False  # a write failed: the failure was raised once, nothing more is written
        self._f: IO[str] | None = None
        self._regular = False  # a regular file (fsync applies; not a pipe or a device)
        self._synced = 0.0  # time.monotonic() of the last fsync

    def check(self) -> None:
        """Raise ``FileExistsError`` (mode new, the file has content), ``IsADirectoryError`` or
        ``PermissionError`` with one line naming the file."""
        p = self.path
        if p.is_dir():
            raise IsADirectoryError(f"{p}: is a folder, not a file to write events to")
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            folder = next(d for d in p.absolute().parents if d.exists())  # the one the file goes into
            if not os.access(folder, os.W_OK):
                raise PermissionError(f"{p}: cannot create it: {folder} is not writable") from None
            return
        if not os.access(p, os.W_OK):
            raise PermissionError(f"{p}: is not writable")
        if self.mode == "new" and size > 0:
            raise FileExistsError(
                f"{p} exists and is not empty: pass --append (mode='append') to add to it or "
                "--overwrite (mode='overwrite') to replace it"
            )

    # -- blocking file work, run in a worker thread --------------------------------------------------
    def _open(self) -> IO[str]:
        self.check()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut_off = self.mode == "append" and _ends_mid_line(self.path)
        # "new" appends too: the file is empty, and a file that gains content meanwhile is not truncated.
        how = "w" if self.mode == "overwrite" else "a"
        f = open(self.path, how, encoding="utf-8", newline="\n")  # noqa: SIM115 - closed in close()
        self._regular = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
        self._synced = time.monotonic()
        if cut_off:
            f.write("\n")  # the last line of an interrupted run stays one bad line, not glued to ours
        return f

    def _write(self, f: IO[str], line: str) -> None:
        f.write(line)
        f.flush()
        if self._regular and self.fsync_s is not None and time.monotonic() - self._synced >= self.fsync_s:
            os.fsync(f.fileno())
            self._synced = time.monotonic()

    def _close(self, f: IO[str]) -> None:
        try:
            f.flush()
            if self._regular:
                os.fsync(f.fileno())
        finally:
            f.close()

    # -- the sink ------------------------------------------------------------------------------------
    async def start(self, info: dict) -> None:
        if self._f is None:
            self._f = await asyncio.to_thread(self._open)

    async def handle(self, event: EmotionEvent) -> None:
        if self._f is None:
            await self.start({})
        assert self._f is not None
        try:
            await asyncio.to_thread(self._write, self._f, event.to_json() + "\n")
        except OSError as e:
            self.failed = True
            err = OSError(f"cannot write event {event.seq} to {self.path}: {e.strerror or e}")
            err.errno = e.errno
            raise err from e

    async def close(self) -> None:
        f, self._f = self._f, None
        if f is None:
            return
        if self.failed:
            # Already reported; the bytes the failed write left in the buffer cannot be written either.
            with contextlib.suppress(OSError):
                f.close()
            return
        await asyncio.to_thread(self._close, f)


def _ends_mid_line(path: Path) -> bool:
    """True when ``path`` is a regular file whose last byte is not a newline."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return False
        with open(path, "rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False
