"""The bounded queue of messages waiting for one client (docs/serve.md, "Slow clients")."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class SendQueue:
    """Messages waiting for the client. Events beyond ``maxsize`` push out the oldest event (counted in
    ``dropped``); control messages (the final event, errors, the summary) are never dropped."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.dropped = 0
        self._items: deque[tuple[bool, dict[str, Any]]] = deque()  # (droppable, message)
        self._droppable = 0
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, message: dict[str, Any], droppable: bool = True) -> None:
        if droppable and self._droppable >= self.maxsize:
            for i, (d, _) in enumerate(self._items):
                if d:
                    del self._items[i]
                    self._droppable -= 1
                    self.dropped += 1
                    break
        self._items.append((droppable, message))
        self._droppable += droppable
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    def __len__(self) -> int:
        return len(self._items)

    async def get(self) -> dict[str, Any] | None:
        """The next message, or None once closed and empty."""
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        droppable, msg = self._items.popleft()
        self._droppable -= droppable
        return msg
