"""Small asyncio helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def within(aw: Awaitable[Any], timeout: float) -> tuple[bool, Any]:
    """Await ``aw`` for at most ``timeout`` seconds: ``(True, result)``, or ``(False, None)`` after the
    timeout (``aw`` is then cancelled). Unlike ``asyncio.wait_for`` on Python 3.11, a cancellation of
    the caller that arrives as ``aw`` completes is never swallowed, so tasks always stop on close."""
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        return False, None
    return True, task.result()
