"""One stream over one WebSocket: start, media in, events out, summary, close (docs/serve.md).

Three tasks per stream: the reader (this coroutine: validates each message and hands media to the
stream's ``MediaIntake``), the pump (engine events -> the bounded send queue) and the sender (send
queue -> socket). A fault in what the client sent ends that stream with an error message and a close
code; the engine is closed, its models stay loaded for the other streams.

A socket counts as pending until its start message is in; only then does it ask for a slot. The
server may end a stream itself (``finish``: a deploy's drain, the maximum duration): the stream then
ends as if the client had sent ``end``, with its final event and summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket

from engine.config import EngineConfig
from engine.core.aio import within
from engine.serve.admission import Decision
from engine.serve.intake import MediaIntake
from engine.serve.limits import TokenBucket
from engine.serve.protocol import (
    CLOSE_INTERNAL,
    CLOSE_INVALID,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TIMEOUT,
    CLOSE_TOO_BIG,
    CLOSE_TRY_LATER,
    ProtocolError,
    StartMessage,
    close_reason,
    parse_json,
    parse_ping,
    parse_start,
)
from engine.serve.send_queue import SendQueue
from engine.sources.push import PushSource
from models.config_io import apply_overrides, from_dict, to_dict

if TYPE_CHECKING:
    from engine.engine import Engine
    from engine.serve.app import Service

log = logging.getLogger("engine.serve")


class ClientGone(Exception):
    """The client closed the socket or the connection broke."""


class Refused(ProtocolError):
    """No slot for this stream now (capacity, load, a drain): 1013 and the reason."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(CLOSE_TRY_LATER, decision.reason)
        self.kind = decision.kind


class StreamSession:
    def __init__(self, ws: WebSocket, service: Service) -> None:
        self.ws = ws
        self.svc = service
        self.cfg = service.cfg
        self.q = SendQueue(service.cfg.send_queue)
        self.start: StartMessage | None = None
        self.engine: Engine | None = None
        self._pump_task: asyncio.Task | None = None  # the engine's events to the send queue
        self.source: PushSource | None = None
        self.intake: MediaIntake | None = None
        self.admitted = False
        self.events = 0
        self.last_event: dict[str, Any] | None = None
        self.t0 = now = time.monotonic()
        self._messages = TokenBucket(self.cfg.max_messages_per_s, 2 * self.cfg.max_messages_per_s, now)
        self._pings = TokenBucket(self.cfg.max_pings_per_s, 10, now)
        self._stop = asyncio.Event()
        self._stopped: asyncio.Task | None = None  # one waiter on _stop for every receive
        self._finish: tuple[int, str] | None = None  # set by finish(): the close code and reason
        self._max_timer: asyncio.TimerHandle | None = None

    # -- the stream ----------------------------------------------------------------------------------
    async def run(self) -> tuple[int, str] | None:
        """Serve the stream to its end, whatever the client does. Returns the close code and reason to
        send (None: the client is gone); the stream's slot is free by then."""
        sender = asyncio.create_task(self._send_loop(), name="serve:send")
        code, reason = CLOSE_NORMAL, "stream ended"
        try:
            code, reason = await self._serve()
        except Refused as e:
            code, reason = e.code, e.message
            self.svc.metrics.rejections.labels(e.kind).inc()
            self.q.put(e.to_message(), False)
        except ProtocolError as e:
            code, reason = e.code, e.message
            kind = "internal" if e.code == CLOSE_INTERNAL else "client"
            self.svc.metrics.errors.labels(kind).inc()
            if kind == "internal":
                log.error("stream %s: %s", self.start.stream if self.start else "?", e.message)
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
            code, reason = await self._close(sender, code, reason)
        return None if code == -1 else (code, reason)

    async def _serve(self) -> tuple[int, str]:
        """Start, admission, the engine, the media until the end, the last events and the summary."""
        self.start = await self._read_start()
        decision = self.svc.admit()
        if not decision.admitted:
            raise Refused(decision)
        self.admitted = True
        self.svc.cpu.open(id(self))
        self.engine = await self._start_engine(self.start)
        self._pump_task = asyncio.create_task(self._pump(self.engine), name="serve:pump")
        fps = self.svc.models.extractors.profile.face.fps  # frames worth sending per second
        ready = {"type": "ready", "stream": self.start.stream, **self.svc.models.describe()}
        ready["video_fps"] = fps
        self.q.put(ready, False)
        self._arm_max_duration()
        code, ended = CLOSE_NORMAL, "end"
        reason = "stream ended"
        if await self._read_media():
            code, ended = self._finish or (CLOSE_NORMAL, "end")
            reason = ended
        assert self.source is not None
        self.source.end()
        ok, _ = await within(self.engine.wait(), 60.0)
        if not ok:
            raise ProtocolError(CLOSE_INTERNAL, "the engine did not finish within 60 s of the end")
        if self.engine.failure is not None:
            raise ProtocolError(CLOSE_INTERNAL, f"server error: {self.engine.failure}")
        await self._pump_task
        self.q.put(self._summary(ended), False)
        return code, reason

    async def _close(self, sender: asyncio.Task, code: int, reason: str) -> tuple[int, str]:
        """Everything the stream holds let go, its slot freed, then what is left sent (within
        ``end_timeout_s``: a client that does not read is closed with CLOSE_TIMEOUT)."""
        if self.engine is not None:
            await self.engine.close()  # cancels what is left; the models stay loaded
        if self._pump_task is not None:
            await asyncio.gather(self._pump_task, return_exceptions=True)
        self._count_drops()
        if self.admitted:
            self._count_cpu()
            self.svc.release()  # before the close: a client that saw it may reconnect at once
        if self._max_timer is not None:
            self._max_timer.cancel()
        if self._stopped is not None:
            self._stopped.cancel()
        self.q.close()
        if code == -1:
            sender.cancel()
        elif not (await asyncio.wait({sender}, timeout=self.cfg.end_timeout_s))[0]:
            sender.cancel()  # the client does not read what is left: close anyway
            code = CLOSE_TIMEOUT
            reason = f"the client did not read its events within {self.cfg.end_timeout_s:g} s"
        await asyncio.gather(sender, return_exceptions=True)
        return code, reason

    def finish(self, code: int, reason: str) -> None:
        """End the stream from the server's side: it closes its last window, sends the final event and
        the summary (``ended``: the reason), then closes with ``code``."""
        if self._finish is None:
            self._finish = (code, reason)
            self._stop.set()

    def _arm_max_duration(self) -> None:
        limit = self.cfg.max_stream_s
        self._max_timer = asyncio.get_running_loop().call_later(
            limit, self.finish, CLOSE_NORMAL, f"maximum stream duration of {limit:g} s reached"
        )

    async def close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):  # the client may be gone already
            await self.ws.close(code, close_reason(reason))

    async def _pause(self, seconds: float) -> None:
        """Hold the reader (backpressure) for ``seconds``, or until the server ends the stream."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _receive(self, timeout: float, waiting_for: str) -> dict[str, Any] | None:
        """The next message, or None when the server ends the stream (``finish``)."""
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._stop.wait())
        recv = asyncio.ensure_future(self.ws.receive())
        try:
            done, _ = await asyncio.wait(
                {recv, self._stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not recv.done():
                recv.cancel()
        if recv not in done:
            if self._stop.is_set():
                return None
            raise ProtocolError(CLOSE_TIMEOUT, f"no {waiting_for} within {timeout:g} s")
        msg = recv.result()
        if msg["type"] == "websocket.disconnect":
            raise ClientGone()
        wait = self._messages.take(time.monotonic())
        if wait > 0:  # over max_messages_per_s: read the next one later
            await self._pause(wait)
        return msg

    def _text(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        text = msg.get("text")
        if text is None:
            return None
        n = len(text.encode("utf-8")) if len(text) * 4 > self.cfg.max_text_bytes else len(text)
        if n > self.cfg.max_text_bytes:
            limit = self.cfg.max_text_bytes
            raise ProtocolError(CLOSE_TOO_BIG, f"text message of {n} bytes exceeds the limit of {limit}")
        return parse_json(text)

    async def _read_start(self) -> StartMessage:
        self.svc.pending += 1
        try:
            msg = await self._receive(self.cfg.start_timeout_s, "start message")
        finally:
            self.svc.pending -= 1
        if msg is None:
            raise ProtocolError(*(self._finish or (CLOSE_TRY_LATER, "server draining")))
        m = self._text(msg)
        if m is None:
            raise ProtocolError(CLOSE_INVALID, 'the first message must be the JSON {"type": "start", ...}')
        return parse_start(m)

    async def _start_engine(self, start: StartMessage) -> Engine:
        try:
            data = apply_overrides(to_dict(self.svc.engine_cfg), start.override_items())
            data["stream"] = start.stream  # as given: never parsed as YAML
            cfg = from_dict(EngineConfig, data, where="stream overrides")
        except ValueError as e:
            raise ProtocolError(CLOSE_INVALID, f"bad override value: {e}") from None
        audio, video = "audio" in start.modalities, "video" in start.modalities
        self.source = PushSource(audio=audio, video=video, name=f"client:{start.stream}")
        self.intake = MediaIntake(self.cfg, start, self.source)
        assert self.svc.models is not None  # the app is ready only once they are loaded
        engine = self.svc.models.engine(cfg, [self.source])
        self.engine = engine  # closed by run() whatever happens next
        await engine.start()
        return engine

    async def _read_media(self) -> bool:
        """Until ``end`` (False) or the server ends the stream (True)."""
        assert self.intake is not None
        while True:
            msg = await self._receive(self.cfg.idle_timeout_s, "message")
            if msg is None:
                return True
            m = self._text(msg)
            if m is not None:
                if m["type"] == "end":
                    return False
                if m["type"] == "ping":
                    t = parse_ping(m)
                    if self._pings.take(time.monotonic()) > 0:
                        raise ProtocolError(
                            CLOSE_POLICY, f"more than {self.cfg.max_pings_per_s:g} pings per second"
                        )
                    self.q.put({"type": "pong", "t": t}, False)
                    continue
                raise ProtocolError(
                    CLOSE_INVALID, f'unexpected message type {m["type"]!r} (media, "end" or "ping")'
                )
            await self.intake.take(msg.get("bytes") or b"", self._pause)

    # -- events out ----------------------------------------------------------------------------------
    async def _pump(self, engine: Engine) -> None:
        m, monitor = self.svc.metrics, self.svc.monitor
        async for ev in engine.events():
            d = ev.to_dict()
            self.events += 1
            self.last_event = d
            m.events.inc()
            m.e2e.observe(ev.e2e_latency_ms / 1000.0)
            m.cpu_seconds.inc(self.svc.cpu.sample())
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

    def _count_cpu(self) -> None:
        m, cpu = self.svc.metrics, self.svc.cpu
        spent_before = cpu.sample()
        seconds = cpu.close(id(self))
        m.cpu_seconds.inc(spent_before)
        media = float((self.last_event or {}).get("t_end") or 0.0)
        if media > 0:
            m.cpu_per_media_s.observe(seconds / media)

    def _count_drops(self) -> None:
        m = self.svc.metrics
        m.dropped_events.inc(self.q.dropped)
        dropped = (self.last_event or {}).get("dropped", {})
        m.dropped_audio.inc(dropped.get("audio_samples", 0))
        m.dropped_frames.inc(dropped.get("video_frames", 0))

    def _summary(self, ended: str) -> dict[str, Any]:
        assert self.start is not None and self.engine is not None
        last = self.last_event or {}
        return {
            "type": "summary",
            "stream": self.start.stream,
            "ended": ended,
            "events": self.events,
            "last_seq": last.get("seq"),
            "media_s": last.get("t_end"),
            "wall_s": round(time.monotonic() - self.t0, 3),
            "held_s": round(self.intake.held_s, 3) if self.intake else 0.0,
            "cpu_s": round(self.svc.cpu.seconds(id(self)), 3),
            "dropped_events": self.q.dropped,
            "dropped": last.get("dropped", {}),
            "errors": list(self.engine.errors),
        }
