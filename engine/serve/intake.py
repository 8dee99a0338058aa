"""Media messages of one started stream into its engine: validated, limited, decoded off the event loop.

Every check runs before the work it guards: the size of a message before it is parsed, the size of an
image (read from its header) before it is decoded, the media time before the media is taken. Decoding
and resampling run in a worker thread, so a busy stream never holds the other streams' event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import cv2
import numpy as np

from engine.serve.config import ServeConfig
from engine.serve.limits import FrameRate, MediaLead
from engine.serve.protocol import (
    CLOSE_INVALID,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED,
    KIND_AUDIO,
    TIME_TOLERANCE_S,
    MediaMessage,
    ProtocolError,
    StartMessage,
    decode_audio,
    image_kind,
    image_size,
    parse_header,
)
from engine.sources.push import PushSource

Pause = Callable[[float], Awaitable[None]]


def decode_image(payload: memoryview) -> np.ndarray | None:
    """JPEG/PNG bytes -> BGR uint8 [H, W, 3], or None when the bytes do not decode."""
    return cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)


class MediaIntake:
    def __init__(self, cfg: ServeConfig, start: StartMessage, source: PushSource) -> None:
        self.cfg, self.start, self.source = cfg, start, source
        self.lead = MediaLead(cfg.max_lead_s, cfg.max_gap_s, time.monotonic())  # made at "ready"
        self.frames = FrameRate(cfg.max_fps)
        self.held_s = 0.0  # total time messages were held back (a client sending ahead of real time)
        self._last_audio_end: float | None = None
        self._last_video_t: float | None = None

    async def take(self, data: bytes, pause: Pause) -> None:
        if len(data) > self.cfg.max_message_bytes:
            raise ProtocolError(
                CLOSE_TOO_BIG,
                f"message of {len(data)} bytes exceeds the limit of {self.cfg.max_message_bytes} bytes",
            )
        media = parse_header(data)
        if media.kind == KIND_AUDIO:
            await self._audio(media, pause)
        else:
            await self._image(media, pause)

    async def _hold(self, t_start: float, t_end: float, what: str, pause: Pause) -> None:
        hold = self.lead.hold_s(t_start, t_end, time.monotonic(), what)
        if hold > 0:
            self.held_s += hold
            await pause(hold)

    async def _audio(self, media: MediaMessage, pause: Pause) -> None:
        if "audio" not in self.start.modalities:
            raise ProtocolError(CLOSE_INVALID, "audio received, but the start message did not list audio")
        fmt = self.start.audio
        dur = len(media.payload) / fmt.frame_bytes / fmt.sample_rate
        if dur > self.cfg.max_chunk_s:
            raise ProtocolError(
                CLOSE_TOO_BIG, f"audio chunk of {dur:.2f} s exceeds {self.cfg.max_chunk_s:g} s"
            )
        if self._last_audio_end is not None and media.t < self._last_audio_end - TIME_TOLERANCE_S:
            raise ProtocolError(
                CLOSE_INVALID,
                f"audio timestamps went backwards: chunk at t={media.t:.3f} s starts before the previous "
                f"chunk ended ({self._last_audio_end:.3f} s)",
            )
        await self._hold(media.t, media.t + dur, "audio", pause)
        await asyncio.to_thread(self._push_audio, media)
        self._last_audio_end = media.t + dur

    def _push_audio(self, media: MediaMessage) -> None:
        pcm = decode_audio(media, self.start.audio)  # raises ProtocolError for a bad payload
        self.source.push_audio(pcm, self.start.audio.sample_rate, media.t)

    async def _image(self, media: MediaMessage, pause: Pause) -> None:
        if "video" not in self.start.modalities:
            raise ProtocolError(CLOSE_INVALID, "video received, but the start message did not list video")
        at = f"video frame at t={media.t:.3f} s"
        if image_kind(media.payload) is None:
            raise ProtocolError(CLOSE_UNSUPPORTED, f"{at} is not a JPEG or PNG image")
        size = image_size(media.payload)
        if size is None:
            raise ProtocolError(
                CLOSE_UNSUPPORTED,
                f"{at} is not a readable JPEG or PNG: its header gives no image size (a JPEG frame "
                "header before the scan data, a PNG IHDR)",
            )
        if size[0] * size[1] > self.cfg.max_image_pixels:
            raise ProtocolError(
                CLOSE_TOO_BIG,
                f"image of {size[0]}x{size[1]} pixels exceeds the limit of "
                f"{self.cfg.max_image_pixels} pixels",
            )
        if self._last_video_t is not None and media.t <= self._last_video_t:
            raise ProtocolError(
                CLOSE_INVALID, f"video timestamps must increase: {at} after t={self._last_video_t:.3f} s"
            )
        await self._hold(media.t, media.t, "video frame", pause)
        self._last_video_t = media.t
        if not self.frames.keep(media.t):
            self.source.dropped_frames += 1  # over max_fps: reported in the events' dropped.video_frames
            return
        img = await asyncio.to_thread(decode_image, media.payload)
        if img is None or img.ndim != 3:
            raise ProtocolError(CLOSE_UNSUPPORTED, f"{at} does not decode as an image")
        self.source.push_frame(img, media.t, bgr=True)
