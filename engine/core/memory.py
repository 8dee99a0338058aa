"""Give the C heap's free pages back to the OS now and then (glibc ``malloc_trim``).

A long stream allocates and frees window-sized buffers in many threads (decoder, VAD, Whisper, face
stage, fusion). glibc keeps freed chunks in per-thread arenas, so resident memory creeps up although
the memory in use does not: in a 15-minute soak, memory in use stayed flat (+0.2 MB per 10 min) while
free-but-kept heap grew 6 MB per 10 min. ``malloc_trim(0)`` once a minute returns those pages: resident
memory was 100 MB lower and flat after 8 minutes (benchmarks/soak.py, --malloc-trim). The processes
that own a stream for hours (run_live.py, engine.serve) run ``trim_every``; where the C library is not
glibc it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging

log = logging.getLogger("engine.core.memory")


def _libc_trim():  # noqa: ANN202 - a ctypes function, or None
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


_TRIM = _libc_trim()
TRIM_AVAILABLE = _TRIM is not None  # glibc: yes; musl, macOS: no (then trimming does nothing)


def malloc_trim() -> bool:
    """Release free heap pages of every arena to the OS. True when glibc released something."""
    return bool(_TRIM(0)) if _TRIM is not None else False


async def trim_every(interval_s: float) -> None:
    """Run ``malloc_trim`` every ``interval_s`` seconds (in a worker thread) until cancelled."""
    if _TRIM is None or interval_s <= 0:
        return
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(malloc_trim)
        except Exception as e:  # noqa: BLE001 - never worth stopping a stream for
            log.debug("malloc_trim failed: %s", e)
