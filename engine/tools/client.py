"""Stream media to an ``engine.serve`` server and read its events (protocol: docs/serve.md).

    async with StreamClient("ws://127.0.0.1:8765/v1/stream", stream="call-17", modalities=("audio",)) as c:
        await c.send_audio(pcm_16k, t=0.0)          # float [-1, 1]; sent as PCM16 by default
        await c.end()
        async for event in c.events():
            ...

    async for event in stream_file("ws://127.0.0.1:8765/v1/stream", "clip.mp4"):   # paced at real time
        ...

``stream_sources`` does the same for any engine source (file replay, microphone, camera): the
sources that the in-process engine reads are the ones the client reads, and the server runs the
engine. The server paces nothing, so files are replayed at real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from engine.frames import AudioFrame, EmotionEvent, Frame, VideoFrame
from engine.serve.protocol import AudioFormat, StartMessage, pack_audio, pack_image
from engine.sources.base import MediaClock, Source

DEFAULT_URL = "ws://127.0.0.1:8765/v1/stream"


class ServerError(Exception):
    """The server refused the stream or ended it with an error: ``code`` is the close code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"server closed the stream ({code}): {message}")
        self.code = code
        self.message = message


class StreamClient:
    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        stream: str = "client",
        modalities: Sequence[str] = ("audio", "video"),
        audio: AudioFormat | None = None,
        overrides: dict[str, Any] | None = None,
        token: str | None = None,
        jpeg_quality: int = 85,
        open_timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.start = StartMessage(stream, tuple(modalities), audio or AudioFormat(), dict(overrides or {}))
        self.token = token
        self.jpeg_quality = jpeg_quality
        self.open_timeout = open_timeout
        self.ssl_context = ssl_context  # wss:// with a private CA (None: the system's trust store)
        self.ready: dict[str, Any] | None = None
        self.summary: dict[str, Any] | None = None
        self.sent_bytes = 0
        self._ws: ClientConnection | None = None

    async def connect(self) -> dict[str, Any]:
        """Open the socket, send ``start``; returns the server's ``ready`` message or raises ServerError."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        kw: dict[str, Any] = {"ssl": self.ssl_context} if self.ssl_context is not None else {}
        self._ws = await connect(
            self.url, additional_headers=headers, open_timeout=self.open_timeout, max_size=None, **kw
        )
        with contextlib.suppress(ConnectionClosed):  # a refusal may close the socket before start is sent
            await self._ws.send(self.start.to_json())
        msg = await self._next()
        if msg is None or msg.get("type") != "ready":
            raise ServerError(*_error_of(msg, self._ws))
        self.ready = msg
        return msg

    async def __aenter__(self) -> StreamClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    @property
    def ws(self) -> ClientConnection:
        if self._ws is None:
            raise RuntimeError("not connected: call connect() first")
        return self._ws

    # -- sending ---------------------------------------------------------------------------------------
    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)
        self.sent_bytes += len(data)

    async def send_audio(self, pcm: np.ndarray, t: float) -> None:
        """pcm: float [n] or [n, channels] in [-1, 1] at the stream's sample rate; t: media time (s)."""
        await self.send_raw(pack_audio(pcm, t, self.start.audio))

    async def send_frame(self, rgb: np.ndarray, t: float) -> None:
        """rgb: uint8 [H, W, 3]; sent as JPEG."""
        data = await asyncio.to_thread(self._jpeg, rgb)
        await self.send_raw(pack_image(data, t))

    def _jpeg(self, rgb: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(
            ".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
        )
        if not ok:
            raise ValueError(f"could not encode a frame of shape {rgb.shape} as JPEG")
        return buf.tobytes()

    async def end(self) -> None:
        await self.send_raw(json.dumps({"type": "end"}))

    # -- receiving -------------------------------------------------------------------------------------
    async def _next(self) -> dict[str, Any] | None:
        try:
            raw = await self.ws.recv()
        except ConnectionClosed:
            return None
        return json.loads(raw)

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Every server message until the server closes the stream."""
        while (msg := await self._next()) is not None:
            yield msg

    @property
    def ended_by_server(self) -> str | None:
        """Why the server ended the stream itself (a deploy's drain: "server shutting down", the maximum
        duration), from the summary; None when it ended on the client's ``end``."""
        ended = (self.summary or {}).get("ended", "end")
        return None if ended == "end" else str(ended)

    async def events(self) -> AsyncIterator[EmotionEvent]:
        """Events in order; the summary is kept in ``self.summary``. A server error raises ServerError
        after the events sent before it. When the server drains for a shutdown, the events end with the
        final event and the summary (``ended_by_server``), then a close with 1001."""
        async for msg in self.messages():
            kind = msg.get("type")
            if kind == "event":
                yield EmotionEvent.from_dict(msg["event"])
            elif kind == "summary":
                self.summary = msg
            elif kind == "error":
                raise ServerError(int(msg.get("code", 0)), str(msg.get("message", "")))
        if self.summary is None:
            raise ServerError(*_error_of(None, self.ws))


def _error_of(msg: dict[str, Any] | None, ws: ClientConnection) -> tuple[int, str]:
    if msg is not None and msg.get("type") == "error":
        return int(msg.get("code", 0)), str(msg.get("message", ""))
    if ws.close_code is not None:
        return ws.close_code, ws.close_reason or "closed without a summary"
    return 1006, "connection lost without a close frame"


async def feed_sources(client: StreamClient, sources: Sequence[Source]) -> None:
    """Run the sources and send what they produce; ``end`` once every source has ended."""
    clock = MediaClock()
    wants = set(client.start.modalities)

    async def emit(frame: Frame) -> None:
        if isinstance(frame, AudioFrame) and "audio" in wants:
            await client.send_audio(frame.pcm, frame.t)
        elif isinstance(frame, VideoFrame) and "video" in wants:
            await client.send_frame(frame.image, frame.t)

    async def run(src: Source) -> None:
        try:
            await src.run(emit, clock)
        finally:
            src.close()

    try:
        await asyncio.gather(*(run(s) for s in sources))
    except ConnectionClosed:
        return  # the server ended the stream (a drain, an error): its messages say why
    finally:
        with contextlib.suppress(ConnectionClosed):
            await client.end()


async def stream_sources(
    url: str, sources: Sequence[Source], *, modalities: Sequence[str] | None = None, **client_kw: Any
) -> AsyncIterator[EmotionEvent]:
    """Stream ``sources`` to the server and yield its events; the client keeps ``summary``."""
    if modalities is None:
        modalities = [m for m in ("audio", "video") if any(m in s.modalities for s in sources)]
    client = StreamClient(url, modalities=modalities, **client_kw)
    await client.connect()
    feeder = asyncio.create_task(feed_sources(client, sources), name="client:feed")
    try:
        async for ev in client.events():
            yield ev
        await feeder
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        await client.close()


async def stream_file(
    url: str,
    path: str | Path,
    *,
    audio: bool = True,
    video: bool = True,
    max_seconds: float | None = None,
    **client_kw: Any,
) -> AsyncIterator[EmotionEvent]:
    """Replay a media file at real-time pace to the server; yields its events."""
    import av

    from engine.sources.file_replay import FileReplaySource

    FileReplaySource(path, audio=audio, video=video).check()  # one clear line for a bad file
    with av.open(str(path)) as container:  # send only the tracks the file has
        audio = audio and bool(container.streams.audio)
        video = video and bool(container.streams.video)
    src = FileReplaySource(path, fast=False, audio=audio, video=video, max_seconds=max_seconds)
    mods = list(src.modalities)
    async for ev in stream_sources(url, [src], modalities=mods, **client_kw):
        yield ev


__all__ = ["DEFAULT_URL", "ServerError", "StreamClient", "feed_sources", "stream_file", "stream_sources"]
