"""Replay any audio/video container through PyAV: video without audio, audio without video, any sample
rate or channel count. Paced at real time, or as fast as the engine consumes (``fast``).

Media time starts at 0 at the start of the file's selected tracks: the earliest start of the audio and
video streams read is subtracted from both, so they stay aligned with each other, and a recording whose
timestamps start at 3600 s (an MPEG-TS capture) plays at once instead of an hour later. Frames larger
than ``max_pixels`` (default 1920 x 1080) are scaled down, keeping their aspect ratio, as they are
converted to RGB: an 8K video does not flood the engine with 100 MB frames.

Decoding is blocking, so each demuxed batch is decoded in a worker thread; pacing sleeps on the event
loop. A file that cannot be opened or that breaks mid-stream becomes modality-missing status frames and
an EndFrame, never an exception out of ``run``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.core.aio import within
from engine.frames import AudioFrame, EndFrame, Frame, SourceStatusFrame
from engine.sources.base import Emit, MediaClock, Source
from engine.sources.track_decoder import TrackDecoder

if TYPE_CHECKING:
    import av

_DONE = object()
DEFAULT_MAX_PIXELS = 1920 * 1080  # 1080p: the face stage needs far less; larger frames are scaled down


class MediaFileError(ValueError):
    """A media file the user asked for cannot be replayed (missing, empty, not media, no usable track)."""


def capped_size(width: int, height: int, max_pixels: int | None) -> tuple[int, int]:
    """(width, height) scaled down to at most ``max_pixels`` pixels with the same aspect ratio (to within
    a pixel); unchanged when the frame is within the cap or there is none."""
    if max_pixels is None or width * height <= max_pixels:
        return width, height
    scale = (max_pixels / (width * height)) ** 0.5
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    while w * h > max_pixels:  # rounding: stay within the cap
        w, h = (w - 1, h) if w / h > width / height else (w, h - 1)
    return w, h


def media_origin(streams: list) -> float:
    """Seconds to subtract from every timestamp: the earliest start of ``streams`` (PyAV streams), so
    media time is 0 where the first of them starts. A negative start (decoder priming) is not an offset
    to remove: 0 then."""
    starts = [float(s.start_time * s.time_base) for s in streams if s.start_time is not None and s.time_base]
    return max(0.0, min(starts)) if starts else 0.0


class FileReplaySource(Source):
    modalities = ("audio", "video")

    def __init__(
        self,
        path: str | Path,
        fast: bool = False,
        name: str | None = None,
        loop: bool = False,
        audio: bool = True,
        video: bool = True,
        max_seconds: float | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        """``max_seconds``: end after that much media. ``max_pixels``: larger video frames are scaled
        down to this many pixels (None: never)."""
        if max_pixels is not None and max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive pixel count or None, not {max_pixels}")
        super().__init__(name or Path(path).name)
        self.path = Path(path)
        self.fast = fast
        self.realtime = not fast
        self.loop_file = loop
        self.want_audio, self.want_video = audio, video
        self.max_seconds = max_seconds
        self.max_pixels = max_pixels
        self.modalities = tuple(m for m, w in (("audio", audio), ("video", video)) if w)
        self._stop_asked = False
        self._wake: asyncio.Event | None = None  # created in run(): the loop that runs it owns it

    def stop(self) -> None:
        """End the replay now (from the event loop that runs it, e.g. a signal handler): ``run`` emits
        no further frame and ends with an EndFrame at the media time reached, so the engine closes the
        window in progress and emits its final event."""
        self._stop_asked = True
        if self._wake is not None:
            self._wake.set()

    def check(self) -> None:  # noqa: C901 - one check per way a file can be unusable
        """Fail fast, with one line, on a file that cannot give any of the wanted tracks: missing, a
        folder, empty, not a container PyAV opens, or without a decodable audio/video frame. (Once a
        stream runs, a file that breaks is a missing modality instead: see ``run``.)"""
        import av

        p = self.path
        if not p.exists():
            raise MediaFileError(f"{p}: no such file")
        if p.is_dir():
            raise MediaFileError(f"{p}: is a folder, not a media file")
        if p.stat().st_size == 0:
            raise MediaFileError(f"{p}: is empty (0 bytes)")
        try:
            container = av.open(str(p))
        except (OSError, av.error.FFmpegError, ValueError) as e:
            raise MediaFileError(f"{p}: not a media file that can be decoded ({e})") from None
        wanted = " or ".join(m for m in ("audio", "video") if m in self.modalities)
        with container:
            streams = [
                s
                for m, s in (("audio", container.streams.audio), ("video", container.streams.video))
                if m in self.modalities and s
            ]
            if not streams:
                raise MediaFileError(f"{p}: has no {wanted} track")
            unsupported = []
            for track in streams:
                s = track[0]
                if s.codec_context is None:  # FFmpeg knows no decoder for this track's codec
                    unsupported.append(f"{s.type}: no decoder for its codec")
                    continue
                try:
                    for _ in container.decode(s):
                        return  # one decodable frame of a wanted track is enough
                except av.error.DecoderNotFoundError:
                    unsupported.append(f"{s.type}: no decoder for {s.codec_context.name}")
                except (av.error.FFmpegError, ValueError, OSError):
                    continue
        if unsupported and len(unsupported) == len(streams):
            raise MediaFileError(
                f"{p}: unsupported codec ({', '.join(unsupported)}); convert it, e.g. to WAV, FLAC or "
                "H.264 MP4"
            )
        raise MediaFileError(f"{p}: no {wanted} frame could be decoded")

    # -- blocking decode, run in a worker thread -------------------------------------------------
    def _decode(self, offset: float) -> Iterator[Frame]:
        """Yield frames in container order, timed from the file's start (``media_origin``) plus ``offset``
        (looping)."""
        import av

        try:
            container = av.open(str(self.path))
        except (OSError, av.error.FFmpegError, ValueError) as e:
            for m in self.modalities:
                yield SourceStatusFrame(m, False, f"cannot open {self.path.name}: {e}", offset, self.name)
            return
        with container:
            a_stream = container.streams.audio[0] if (self.want_audio and container.streams.audio) else None
            v_stream = container.streams.video[0] if (self.want_video and container.streams.video) else None
            if self.want_audio and a_stream is None:
                yield SourceStatusFrame("audio", False, "file has no audio track", offset, self.name)
            if self.want_video and v_stream is None:
                yield SourceStatusFrame("video", False, "file has no video track", offset, self.name)
            streams = [s for s in (a_stream, v_stream) if s is not None]
            if not streams:
                return
            origin = media_origin(streams)  # one origin for both tracks keeps them aligned
            tracks = TrackDecoder(a_stream, v_stream, origin, offset, self.name, self.path.name, self._rgb)
            packets = container.demux(*streams)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except (av.error.FFmpegError, ValueError, OSError) as e:
                    # The container itself is damaged: stop this file; what was decoded stays valid.
                    for m in self.modalities:
                        why = f"cannot read {self.path.name}: {e}"
                        yield SourceStatusFrame(m, False, why, tracks.here, self.name)
                    return
                yield from tracks.packet(packet)
            yield from tracks.flush()

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """RGB uint8 [H, W, 3] of a decoded frame, scaled down to ``max_pixels`` in the same conversion
        (area filter: no aliasing)."""
        w, h = capped_size(frame.width, frame.height, self.max_pixels)
        if (w, h) == (frame.width, frame.height):
            return frame.to_ndarray(format="rgb24")
        return frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")

    # -- the coroutine ------------------------------------------------------------------------------
    async def run(self, emit: Emit, clock: MediaClock) -> None:
        offset = 0.0
        t_last = 0.0  # media time reached by the frames emitted
        wall0 = time.monotonic()
        self._wake = asyncio.Event()
        while not self._stop_asked:
            frames = self._decode(offset)
            while True:
                # Decoding a packet is blocking work: off the event loop. Sentinel instead of
                # StopIteration, which cannot cross a thread boundary cleanly.
                frame = await asyncio.to_thread(next, frames, _DONE)
                if frame is _DONE:
                    break
                assert not isinstance(frame, EndFrame)
                if self.max_seconds is not None and frame.t >= self.max_seconds:
                    frames.close()
                    t_end = max(t_last, frame.t + (frame.duration if isinstance(frame, AudioFrame) else 0.0))
                    await emit(EndFrame(self.name, min(t_end, self.max_seconds)))
                    return
                if not self.fast and not self._stop_asked:
                    delay = wall0 + frame.t - time.monotonic()
                    if delay > 0:
                        await within(self._wake.wait(), delay)  # a stop() ends the wait
                if self._stop_asked:
                    frames.close()
                    break
                t_last = max(t_last, frame.t + (frame.duration if isinstance(frame, AudioFrame) else 0.0))
                frame.arrival = time.monotonic()
                await emit(frame)
            if self._stop_asked or not self.loop_file or t_last <= offset:
                break
            offset = t_last
        await emit(EndFrame(self.name, t_last))
