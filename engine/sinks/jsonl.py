"""One JSON object per line per event, flushed as it is written (a crash loses at most one line)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import IO

from engine.frames import EmotionEvent
from engine.sinks.base import Sink


class JSONLSink(Sink):
    name = "jsonl"

    def __init__(self, path: str | Path, append: bool = False) -> None:
        self.path = Path(path)
        self.append = append
        self._f: IO[str] | None = None

    def _open(self) -> IO[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return open(self.path, "a" if self.append else "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    async def start(self, info: dict) -> None:
        self._f = await asyncio.to_thread(self._open)

    async def handle(self, event: EmotionEvent) -> None:
        if self._f is None:
            self._f = await asyncio.to_thread(self._open)
        self._f.write(event.to_json() + "\n")
        self._f.flush()

    async def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
