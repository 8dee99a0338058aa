"""Per-stream limits on what one client may make the server do (docs/serve.md, "Limits").

Each is checked before the work it causes: a message is held (backpressure: the server stops reading
that socket, so TCP holds the client back) or refused with a close code and the reason. Nothing here
touches sockets; ``StreamSession`` applies them.
"""

from __future__ import annotations

from engine.serve.protocol import CLOSE_INVALID, ProtocolError


class TokenBucket:
    """``rate`` events per second with bursts of ``burst``: ``take`` says how long to wait first."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = float(rate), float(burst)
        self.tokens, self.t = float(burst), now

    def take(self, now: float) -> float:
        """Take one; returns the seconds until it is covered (0: now). Waiting that long keeps the rate."""
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class MediaLead:
    """How far media time runs ahead of the wall clock, both counted from the stream's start (media
    time 0 is the moment the server said ``ready``). A live client cannot be ahead (it sends what it has
    captured); a file sent at once, or a timestamp that jumps, is. Up to ``max_lead_s`` ahead is taken
    at once; beyond, the message waits until the clock catches up; a message more than ``max_gap_s``
    ahead ends the stream."""

    def __init__(self, max_lead_s: float, max_gap_s: float, wall0: float) -> None:
        self.max_lead_s, self.max_gap_s = max_lead_s, max_gap_s
        self.wall0 = wall0

    def lead(self, t_end: float, now: float) -> float:
        return t_end - (now - self.wall0)

    def hold_s(self, t_start: float, t_end: float, now: float, what: str) -> float:
        """Seconds to hold media [t_start, t_end] before taking it; raises ProtocolError for a jump."""
        lead = self.lead(t_end, now)
        if lead > self.max_gap_s:
            raise ProtocolError(
                CLOSE_INVALID,
                f"media time jumped ahead: {what} at t={t_start:.3f} s would run {lead:.1f} s ahead of the "
                f"wall clock since the stream started (max_gap_s {self.max_gap_s:g} s); media times are "
                "seconds from the stream's start, on the capture clock",
            )
        return max(0.0, lead - self.max_lead_s)


class FrameRate:
    """Video frames kept at most ``max_fps`` per second of media time, over a burst of ``burst`` frames;
    a frame beyond is dropped before it is decoded (and counted as a dropped frame)."""

    def __init__(self, max_fps: float, burst: float = 5.0) -> None:
        self.max_fps, self.burst = max_fps, burst
        self.t0: float | None = None
        self.kept = 0

    def keep(self, t: float) -> bool:
        if self.t0 is None:
            self.t0 = t
        if self.kept >= (t - self.t0) * self.max_fps + self.burst:
            return False
        self.kept += 1
        return True
