"""The media timeline: what each modality delivered, when it arrived, whether its source is up, and
when a window is ready to process.

One ``MediaState`` per engine, written by the consumers (``engine/core/consumers.py``) and read by the
window loop (``engine/core/window_loop.py``), both on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from engine.core.aio import within
from engine.core.timeline import AudioTimeline, VideoTimeline
from engine.frames import SourceStatusFrame

TRACKS = ("audio", "video")  # the media tracks a source delivers (the model's modalities add text)


class MediaState:
    def __init__(self, providers: dict[str, int], face_fps: float) -> None:
        self.providers = providers  # sources that deliver each modality
        self.face_fps = face_fps
        self.ended = {m: 0 for m in TRACKS}
        self.down: dict[str, list[tuple[float, bool, str]]] = {m: [] for m in TRACKS}  # (t, ok, reason)
        self.arrivals: dict[str, deque[tuple[float, float]]] = {m: deque() for m in TRACKS}
        self.end_arrival = 0.0
        self.audio = AudioTimeline()
        self.video = VideoTimeline()
        self.progress = asyncio.Event()  # set whenever anything above changes

    # -- written by the consumers --------------------------------------------------------------------
    def status(self, f: SourceStatusFrame) -> None:
        self.down[f.modality].append((f.t, f.ok, f.reason))
        self.progress.set()

    def arrived(self, m: str, t: float, arrival: float) -> None:
        """Media of ``m`` up to media time ``t`` entered the engine at monotonic ``arrival``."""
        self.arrivals[m].append((t, arrival))

    def end(self, m: str, arrival: float) -> None:
        self.ended[m] += 1
        self.end_arrival = max(self.end_arrival, arrival)

    async def wait_progress(self, timeout: float) -> None:
        """Until something changes or ``timeout`` seconds pass. (Not ``asyncio.wait_for``: on Python
        3.11 it can swallow a cancellation that arrives as the event is set, and close() then hangs.)"""
        self.progress.clear()
        await within(self.progress.wait(), timeout)

    # -- read by the window loop ---------------------------------------------------------------------
    def is_down(self, m: str) -> bool:
        return bool(self.down[m]) and not self.down[m][-1][1]

    def live(self, m: str) -> bool:
        """The modality has a running provider that is not reported down."""
        return self.ended[m] < self.providers[m] and not self.is_down(m)

    def all_ended(self) -> bool:
        return all(self.ended[m] >= self.providers[m] for m in TRACKS)

    def media_end(self) -> float:
        v = self.video
        v_end = v.end + 1.0 / self.face_fps if v.records or v.end else 0.0
        return max(self.audio.end, v_end)

    def ready(self, t_end: float) -> bool:
        """Every live modality has media up to ``t_end``."""
        if not (self.live("audio") or self.live("video")):
            return False  # nothing delivers: live streams get their windows on the wall clock instead
        for m, clock in (("audio", self.audio.end), ("video", self.video.end)):
            if self.live(m) and clock < t_end - 1e-6:
                return False
        return True

    def down_reason(self, m: str, t0: float, t1: float) -> str:
        """Why modality ``m`` had no source during [t0, t1), or ""."""
        if self.providers[m] == 0:
            return f"no {m} source"
        reason, down = "", False
        for t, ok, why in self.down[m]:
            if t >= t1 and t > t0:  # a status at t0 still counts for an empty window [t0, t0]
                break
            down, reason = (not ok), why
        if down:
            return reason
        clock = self.audio.end if m == "audio" else self.video.end
        if self.ended[m] >= self.providers[m] and t1 > clock:
            return reason or "stream ended"
        return ""

    def arrival_of(self, t_end: float) -> float:
        """Monotonic time at which the media completing the window arrived."""
        best = 0.0
        for m in TRACKS:
            for t, arr in self.arrivals[m]:
                if t >= t_end - 1e-6:
                    best = max(best, arr)
                    break
            else:
                if self.arrivals[m]:
                    best = max(best, self.arrivals[m][-1][1], self.end_arrival)
        return best or time.monotonic()

    def trim(self, keep_from: float, done_until: float) -> None:
        """Bounded memory: drop media no later window can use and arrivals of processed windows."""
        self.audio.trim(keep_from)
        self.video.trim(keep_from)
        for m in TRACKS:
            q = self.arrivals[m]
            while len(q) > 1 and q[1][0] < done_until:
                q.popleft()
