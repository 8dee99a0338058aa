"""A fake ``sounddevice`` module: an InputStream that calls back from its own thread with real PCM.

Install with ``monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice(...))``. ``pcm`` is
[n, channels] float32 at ``samplerate``; ``stop_after_s`` ends the callbacks (a device unplugged);
``fail_open`` makes opening raise like PortAudio does without a device; ``stall_after_s`` makes the
first stream stop calling back after that much audio while it still reports itself active (a driver
stall); streams opened after it deliver normally.
"""

from __future__ import annotations

import threading
import time
import types
from typing import Any

import numpy as np


class PortAudioError(Exception):
    pass


class FakeInputStream:
    def __init__(
        self,
        owner: FakeSoundDevice,
        device: Any = None,
        samplerate: float = 48000,
        channels: int = 1,
        dtype: str = "float32",
        blocksize: int = 1024,
        callback: Any = None,
    ) -> None:
        if owner.fail_open:
            raise PortAudioError("Error querying device -1")
        self.owner, self.samplerate, self.channels = owner, int(samplerate), channels
        self.blocksize, self.callback = blocksize, callback
        self.active = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        owner.streams.append(self)

    def _loop(self) -> None:
        pcm = self.owner.pcm
        pos = 0
        t0 = time.monotonic()
        while not self._stop.is_set():
            stall = self.owner.stall_after_s
            if stall is not None and self is self.owner.streams[0] and pos / self.samplerate >= stall:
                self._stop.wait()  # stalled: active, but no callback until stopped
                return
            if self.owner.stop_after_s is not None and pos / self.samplerate >= self.owner.stop_after_s:
                self.active = False
                self.owner.fail_open = True  # unplugged: reopening fails from now on
                return  # the device vanished: no more callbacks
            block = pcm[pos : pos + self.blocksize]
            if len(block) < self.blocksize:
                block = np.concatenate(
                    [block, np.zeros((self.blocksize - len(block), pcm.shape[1]), np.float32)]
                )
            pos += self.blocksize
            delay = t0 + pos / self.samplerate / self.owner.speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.callback(block[:, : self.channels], self.blocksize, None, None)

    def start(self) -> None:
        self.active = True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.active = False

    def close(self) -> None:
        self.stop()


class FakeSoundDevice(types.ModuleType):
    def __init__(
        self,
        pcm: np.ndarray,
        samplerate: int = 48000,
        stop_after_s: float | None = None,
        fail_open: bool = False,
        speed: float = 1.0,
        stall_after_s: float | None = None,
    ) -> None:
        super().__init__("sounddevice")
        self.stall_after_s = stall_after_s
        self.pcm = pcm if pcm.ndim == 2 else pcm[:, None]
        self.samplerate = samplerate
        self.stop_after_s = stop_after_s
        self.fail_open = fail_open
        self.speed = speed  # >1: deliver faster than real time (tests)
        self.streams: list[FakeInputStream] = []
        self.PortAudioError = PortAudioError

    def query_devices(self, device: Any = None, kind: str | None = None) -> dict:
        if self.fail_open:
            raise PortAudioError("no input device")
        return {
            "name": "fake mic",
            "default_samplerate": float(self.samplerate),
            "max_input_channels": int(self.pcm.shape[1]),
        }

    def InputStream(self, **kw: Any) -> FakeInputStream:  # noqa: N802 - sounddevice's name
        return FakeInputStream(self, **kw)
