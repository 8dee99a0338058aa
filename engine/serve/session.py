"""One stream over one WebSocket: start, media in, events out, summary, close (docs/serve.md).

Three tasks per stream: the reader (this coroutine: validates each message and pushes media into the
stream's engine), the pump (engine events -> the bounded send queue) and the sender (send queue ->
socket). A fault in what the client sent ends that stream with an error message and a close code; the
engine is closed, its models stay loaded for the other streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from starlette.websockets import WebSocket

from engine.aio import within
from engine.config import EngineConfig
from engine.serve.protocol import (
    CLOSE_INTERNAL,
    CLOSE_INVALID,
    CLOSE_NORMAL,
    CLOSE_TIMEOUT,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED,
    KIND_AUDIO,
    TIME_TOLERANCE_S,
    MediaMessage,
    ProtocolError,
    StartMessage,
    close_reason,
    decode_audio,
    image_kind,
    image_size,
    parse_header,
    parse_json,
    parse_start,
)
from engine.sources.push import PushSource
from models.config_io import apply_overrides, from_dict, to_dict

if TYPE_CHECKING:
    from engine.engine import Engine
    from engine.serve.app import Service

log = logging.getLogger("engine.serve")


class ClientGone(Exception):
    """The client closed the socket or the connection broke."""


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


def decode_image(payload: memoryview) -> np.ndarray | None:
    """JPEG/PNG bytes -> BGR uint8 [H, W, 3], or None when the bytes do not decode."""
    return cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)


class StreamSession:
    def __init__(self, ws: WebSocket, service: Service) -> None:
        self.ws = ws
        self.svc = service
        self.cfg = service.cfg
        self.q = SendQueue(service.cfg.send_queue)
        self.start: StartMessage | None = None
        self.engine: Engine | None = None
        self.source: PushSource | None = None
        self.events = 0
        self.last_event: dict[str, Any] | None = None
        self.t0 = time.monotonic()
        self._last_audio_end: float | None = None
        self._last_video_t: float | None = None

    # -- the stream ----------------------------------------------------------------------------------
    async def run(self) -> tuple[int, str] | None:
        """Admitted already: serve the stream to its end, whatever the client does. Returns the close
        code and reason to send (None: the client is gone); the caller frees the stream's slot first."""
        sender = asyncio.create_task(self._send_loop(), name="serve:send")
        pump: asyncio.Task | None = None
        code, reason = CLOSE_NORMAL, "stream ended"
        try:
            self.start = await self._read_start()
            self.engine = await self._start_engine(self.start)
            pump = asyncio.create_task(self._pump(self.engine), name="serve:pump")
            self.q.put({"type": "ready", "stream": self.start.stream, **self.svc.models.describe()}, False)
            await self._read_media()
            assert self.source is not None
            self.source.end()
            done, _ = await within(self.engine.wait(), 60.0)
            if not done:
                raise ProtocolError(
                    CLOSE_INTERNAL, "the engine did not finish within 60 s of the end message"
                )
            await pump
            self.q.put(self._summary(), False)
        except ProtocolError as e:
            code, reason = e.code, e.message
            kind = "internal" if e.code == CLOSE_INTERNAL else "client"
            self.svc.metrics.errors.labels(kind).inc()
            self.q.put(e.to_message(), False)
        except ClientGone:
            self.svc.metrics.disconnects.inc()
            code = -1
        except Exception as e:  # noqa: BLE001 - a bug in one stream must not take the server down
            log.exception("stream %s failed", self.start.stream if self.start else "?")
            code, reason = CLOSE_INTERNAL, f"server error: {type(e).__name__}: {e}"
            self.svc.metrics.errors.labels("internal").inc()
            self.q.put({"type": "error", "code": code, "message": reason}, False)
        finally:
            if self.engine is not None:
                await self.engine.close()  # cancels what is left; the models stay loaded
            if pump is not None:
                await asyncio.gather(pump, return_exceptions=True)
            self._count_drops()
            self.q.close()
            if code == -1:
                sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return None if code == -1 else (code, reason)

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):  # the client may be gone already
            await self.ws.close(code, close_reason(reason))

    async def _receive(self, timeout: float, waiting_for: str) -> dict[str, Any]:
        ok, msg = await within(self.ws.receive(), timeout)
        if not ok:
            raise ProtocolError(CLOSE_TIMEOUT, f"no {waiting_for} within {timeout:g} s")
        if msg["type"] == "websocket.disconnect":
            raise ClientGone()
        return msg

    async def _read_start(self) -> StartMessage:
        msg = await self._receive(self.cfg.start_timeout_s, "start message")
        if msg.get("text") is None:
            raise ProtocolError(CLOSE_INVALID, 'the first message must be the JSON {"type": "start", ...}')
        return parse_start(parse_json(msg["text"]))

    async def _start_engine(self, start: StartMessage) -> Engine:
        try:
            data = apply_overrides(to_dict(self.svc.engine_cfg), start.override_items())
            data["stream"] = start.stream  # as given: never parsed as YAML
            cfg = from_dict(EngineConfig, data, where="stream overrides")
        except ValueError as e:
            raise ProtocolError(CLOSE_INVALID, f"bad override value: {e}") from None
        audio, video = "audio" in start.modalities, "video" in start.modalities
        self.source = PushSource(audio=audio, video=video, name=f"client:{start.stream}")
        assert self.svc.models is not None  # the app is ready only once they are loaded
        engine = self.svc.models.engine(cfg, [self.source])
        self.engine = engine  # closed by run() whatever happens next
        await engine.start()
        return engine

    async def _read_media(self) -> None:
        while True:
            msg = await self._receive(self.cfg.idle_timeout_s, "message")
            if msg.get("text") is not None:
                m = parse_json(msg["text"])
                if m["type"] == "end":
                    return
                if m["type"] == "ping":
                    self.q.put({"type": "pong", "t": m.get("t")}, False)
                    continue
                raise ProtocolError(
                    CLOSE_INVALID, f'unexpected message type {m["type"]!r} (media, "end" or "ping")'
                )
            data = msg.get("bytes") or b""
            if len(data) > self.cfg.max_message_bytes:
                raise ProtocolError(
                    CLOSE_TOO_BIG,
                    f"message of {len(data)} bytes exceeds the limit of {self.cfg.max_message_bytes} bytes",
                )
            media = parse_header(data)
            if media.kind == KIND_AUDIO:
                self._on_audio(media)
            else:
                await self._on_image(media)

    def _on_audio(self, media: MediaMessage) -> None:
        assert self.start is not None and self.source is not None
        if "audio" not in self.start.modalities:
            raise ProtocolError(CLOSE_INVALID, "audio received, but the start message did not list audio")
        fmt = self.start.audio
        pcm = decode_audio(media, fmt)
        dur = pcm.shape[0] / fmt.sample_rate
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
        self._last_audio_end = media.t + dur
        self.source.push_audio(pcm, fmt.sample_rate, media.t)

    async def _on_image(self, media: MediaMessage) -> None:
        assert self.start is not None and self.source is not None
        if "video" not in self.start.modalities:
            raise ProtocolError(CLOSE_INVALID, "video received, but the start message did not list video")
        if image_kind(media.payload) is None:
            raise ProtocolError(
                CLOSE_UNSUPPORTED, f"video frame at t={media.t:.3f} s is not a JPEG or PNG image"
            )
        size = image_size(media.payload)
        if size is not None and size[0] * size[1] > self.cfg.max_image_pixels:
            raise ProtocolError(
                CLOSE_TOO_BIG,
                f"image of {size[0]}x{size[1]} pixels exceeds the limit of "
                f"{self.cfg.max_image_pixels} pixels",
            )
        if self._last_video_t is not None and media.t <= self._last_video_t:
            raise ProtocolError(
                CLOSE_INVALID,
                f"video timestamps must increase: frame at t={media.t:.3f} s "
                f"after t={self._last_video_t:.3f} s",
            )
        img = await asyncio.to_thread(decode_image, media.payload)
        if img is None or img.ndim != 3:
            raise ProtocolError(
                CLOSE_UNSUPPORTED, f"video frame at t={media.t:.3f} s does not decode as an image"
            )
        self._last_video_t = media.t
        self.source.push_frame(img, media.t, bgr=True)

    # -- events out ----------------------------------------------------------------------------------
    async def _pump(self, engine: Engine) -> None:
        m, monitor = self.svc.metrics, self.svc.monitor
        async for ev in engine.events():
            d = ev.to_dict()
            self.events += 1
            self.last_event = d
            m.events.inc()
            m.e2e.observe(ev.e2e_latency_ms / 1000.0)
            monitor.observe(ev.e2e_latency_ms)
            self.q.put({"type": "event", "event": d}, droppable=not ev.final)

    async def _send_loop(self) -> None:
        while (msg := await self.q.get()) is not None:
            if msg["type"] == "event":
                msg["event"]["dropped"]["events"] = self.q.dropped
            try:
                await self.ws.send_text(json.dumps(msg, separators=(",", ":")))
            except Exception:  # noqa: BLE001 - the client is gone: the reader sees it too
                return
            if msg["type"] == "event":
                self.svc.metrics.sent.inc()

    def _count_drops(self) -> None:
        m = self.svc.metrics
        m.dropped_events.inc(self.q.dropped)
        dropped = (self.last_event or {}).get("dropped", {})
        m.dropped_audio.inc(dropped.get("audio_samples", 0))
        m.dropped_frames.inc(dropped.get("video_frames", 0))

    def _summary(self) -> dict[str, Any]:
        assert self.start is not None and self.engine is not None
        last = self.last_event or {}
        return {
            "type": "summary",
            "stream": self.start.stream,
            "events": self.events,
            "last_seq": last.get("seq"),
            "media_s": last.get("t_end"),
            "wall_s": round(time.monotonic() - self.t0, 3),
            "dropped_events": self.q.dropped,
            "dropped": last.get("dropped", {}),
            "errors": list(self.engine.errors),
        }
