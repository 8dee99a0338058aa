"""The stream protocol of ``engine.serve`` (docs/serve.md), shared by the server and ``engine.tools.client``.

One WebSocket per stream:

1. client -> server, text: ``{"type": "start", "stream": ..., "modalities": [...], "audio": {...},
   "overrides": {...}}``; the server answers ``{"type": "ready", ...}`` or an error and a close.
2. client -> server, binary: a 16-byte header (``HEADER``) then the payload: PCM samples for audio,
   a JPEG or PNG file for video.
3. client -> server, text: ``{"type": "end"}``.

Server -> client, text: ``{"type": "event", "event": {...}}`` per window (the JSONL sink's schema,
``seq`` gapless), then ``{"type": "summary", ...}``, then a normal close. A fault is
``{"type": "error", "code": ..., "message": ...}`` followed by a close with that code.

Nothing here touches sockets or models: it is the wire format and its validation.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

VERSION = 1
MAGIC = b"EM"
# magic, version, kind, media time t (s, float64), aux (audio: sample rate in Hz; video: 0)
HEADER = struct.Struct("<2sBBdI")
KIND_AUDIO = 1
KIND_VIDEO = 2
AUDIO_FORMATS = {"pcm16": np.dtype("<i2"), "f32": np.dtype("<f4")}
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000
MAX_CHANNELS = 8
JPEG_MAGIC, PNG_MAGIC = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
TIME_TOLERANCE_S = 0.002  # audio chunks may overlap their predecessor by this much (rounding)

# Close codes (RFC 6455 section 7.4.1, and the 4000-4999 private range).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # the server is shutting down (after the drain: final event and summary sent)
CLOSE_UNSUPPORTED = 1003  # bytes that are not a JPEG/PNG image, an unknown message kind
CLOSE_INVALID = 1007  # malformed JSON, header or payload; timestamps going backwards
CLOSE_POLICY = 1008  # missing or bad token; an override that is not allowed
CLOSE_TOO_BIG = 1009  # a message over the size limit, an image over the pixel limit
CLOSE_INTERNAL = 1011  # the server failed on this stream
CLOSE_TRY_LATER = 1013  # at capacity: refused before any media was taken
CLOSE_TIMEOUT = 4408  # no start message (or no media) within the time limit

# The summary's "ended" (and the 1001 close reason) when the server drains for a shutdown.
SERVER_SHUTDOWN = "server shutting down"

# Engine config keys a client may override per stream. Everything that changes a shared model
# (checkpoint, extractors, backend) or the server's resources (queues) stays the server's choice.
ALLOWED_OVERRIDES: dict[str, type | tuple[type, ...]] = {
    "window.window_s": (int, float),
    "window.hop_s": (int, float),
    "window.min_final_s": (int, float),
    "ema_alpha": (int, float),
    "expert": bool,
    "asr.enabled": bool,
    "asr.agreement": int,
    "asr.prompt_words": int,
    "asr.end_silence_s": (int, float),
    "text_health.use_tentative": bool,
    "text_health.min_words": int,
    "audio_health.silence_dbfs": (int, float),
    "audio_health.vad_threshold": (int, float),
    "audio_health.min_speech_ratio": (int, float),
    "video_health.min_face_ratio": (int, float),
    "video_health.occlusion_score": (int, float),
    "video_health.dark_luma": (int, float),
}


class ProtocolError(Exception):
    """What a client did wrong: ``code`` is the WebSocket close code, ``message`` says what and how."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_message(self) -> dict[str, Any]:
        return {"type": "error", "code": self.code, "message": self.message}


@dataclass(frozen=True)
class AudioFormat:
    encoding: str = "pcm16"  # pcm16 (little-endian int16) | f32 (little-endian float32 in [-1, 1])
    sample_rate: int = 16000
    channels: int = 1

    @property
    def frame_bytes(self) -> int:
        return AUDIO_FORMATS[self.encoding].itemsize * self.channels


@dataclass(frozen=True)
class StartMessage:
    stream: str
    modalities: tuple[str, ...] = ("audio", "video")
    audio: AudioFormat = field(default_factory=AudioFormat)
    overrides: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "type": "start",
                "version": VERSION,
                "stream": self.stream,
                "modalities": list(self.modalities),
                "audio": {
                    "format": self.audio.encoding,
                    "sample_rate": self.audio.sample_rate,
                    "channels": self.audio.channels,
                },
                "overrides": self.overrides,
            }
        )

    def override_items(self) -> list[str]:
        """The overrides as ``key=value`` items for ``load_engine_config`` (values as YAML/JSON)."""
        return [f"{k}={json.dumps(v)}" for k, v in self.overrides.items()]


def close_reason(text: str) -> str:
    """A WebSocket close reason fits in 123 bytes of UTF-8; the full text goes in the error message."""
    b = text.encode("utf-8")
    return text if len(b) <= 123 else b[:120].decode("utf-8", "ignore") + "..."


def _bad(message: str) -> ProtocolError:
    return ProtocolError(CLOSE_INVALID, message)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str) -> dict[str, Any]:
    """One text message -> its object. NaN and Infinity (not JSON, though Python writes them) and
    nesting too deep to parse are malformed JSON too."""
    try:
        msg = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise _bad(f"malformed JSON message: {e.msg} at character {e.pos}") from None
    except ValueError as e:
        raise _bad(f"malformed JSON message: {e}") from None
    except RecursionError:
        raise _bad("malformed JSON message: nested too deeply") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise _bad('a text message must be a JSON object with a "type" string')
    return msg


def parse_start(msg: dict[str, Any]) -> StartMessage:  # noqa: C901 - one check per field of an untrusted message
    """Validate a ``start`` message; raises ``ProtocolError`` naming the first problem."""
    if msg.get("type") != "start":
        raise _bad(f'the first message must be {{"type": "start", ...}}, got type {msg.get("type")!r}')
    if msg.get("version", VERSION) != VERSION:
        raise _bad(f"protocol version {msg.get('version')!r} is not supported (server speaks {VERSION})")
    unknown = set(msg) - {"type", "version", "stream", "modalities", "audio", "overrides"}
    if unknown:
        raise _bad(f"unknown start field(s): {', '.join(sorted(unknown))}")
    stream = msg.get("stream")
    if not isinstance(stream, str) or not 0 < len(stream) <= 128 or not stream.isprintable():
        raise _bad("start.stream must be a printable string of 1 to 128 characters")
    mods = msg.get("modalities", ["audio", "video"])
    if (
        not isinstance(mods, list)
        or not mods
        or not set(mods) <= {"audio", "video"}
        or len(set(mods)) != len(mods)
    ):
        raise _bad('start.modalities must be a non-empty list of distinct "audio" and "video"')
    audio = AudioFormat()
    if "audio" in mods:
        a = msg.get("audio", {})
        if not isinstance(a, dict) or set(a) - {"format", "sample_rate", "channels"}:
            raise _bad('start.audio must be {"format", "sample_rate", "channels"}')
        enc, sr, ch = a.get("format", "pcm16"), a.get("sample_rate", 16000), a.get("channels", 1)
        if enc not in AUDIO_FORMATS:
            raise _bad(f"start.audio.format must be one of {sorted(AUDIO_FORMATS)}, got {enc!r}")
        if type(sr) is not int or not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
            raise _bad(
                f"start.audio.sample_rate must be an integer in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz, "
                f"got {sr!r}"
            )
        if type(ch) is not int or not 1 <= ch <= MAX_CHANNELS:
            raise _bad(f"start.audio.channels must be an integer in [1, {MAX_CHANNELS}], got {ch!r}")
        audio = AudioFormat(enc, sr, ch)
    overrides = msg.get("overrides", {})
    if not isinstance(overrides, dict):
        raise _bad("start.overrides must be an object of config key -> value")
    for k, v in overrides.items():
        if k not in ALLOWED_OVERRIDES:
            raise ProtocolError(
                CLOSE_POLICY,
                f"override {k!r} is not allowed; allowed: {', '.join(sorted(ALLOWED_OVERRIDES))}",
            )
        want = ALLOWED_OVERRIDES[k]
        if not isinstance(v, want) or (isinstance(v, bool) and want is not bool):
            raise _bad(f"override {k!r} has the wrong type: {type(v).__name__}")
        if isinstance(v, float) and not math.isfinite(v):
            raise _bad(f"bad override value: {k!r} must be a finite number, got {v}")
    return StartMessage(stream, tuple(mods), audio, dict(overrides))


def parse_ping(msg: dict[str, Any]) -> float | None:
    """A ping's ``t``: absent, or a finite number (echoed back in the pong); nothing else is echoed."""
    if set(msg) - {"type", "t"}:
        raise _bad(f"unknown ping field(s): {', '.join(sorted(set(msg) - {'type', 't'}))}")
    t = msg.get("t")
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        raise _bad(f"ping.t must be a finite number, got {type(t).__name__}")
    return float(t)


# -- binary media messages ---------------------------------------------------------------------------
def pack_audio(pcm: np.ndarray, t: float, fmt: AudioFormat) -> bytes:
    """pcm: float [n] or [n, channels] in [-1, 1] -> one audio message in ``fmt``."""
    x = np.asarray(pcm, np.float32)
    if fmt.encoding == "pcm16":
        data = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2").tobytes()
    else:
        data = x.astype("<f4").tobytes()
    return HEADER.pack(MAGIC, VERSION, KIND_AUDIO, float(t), fmt.sample_rate) + data


def pack_image(encoded: bytes, t: float) -> bytes:
    """An encoded JPEG or PNG -> one video message."""
    return HEADER.pack(MAGIC, VERSION, KIND_VIDEO, float(t), 0) + encoded


@dataclass(frozen=True)
class MediaMessage:
    kind: int
    t: float
    aux: int
    payload: memoryview


def parse_header(data: bytes) -> MediaMessage:
    if len(data) < HEADER.size:
        raise _bad(f"a binary message needs a {HEADER.size}-byte header, got {len(data)} bytes")
    magic, version, kind, t, aux = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise _bad(f"bad binary header: magic {magic!r}, version {version} (want {MAGIC!r}, {VERSION})")
    if kind not in (KIND_AUDIO, KIND_VIDEO):
        raise ProtocolError(CLOSE_UNSUPPORTED, f"unknown media kind {kind} (1: audio, 2: video)")
    if not np.isfinite(t) or t < 0:
        raise _bad(f"media time must be a finite number of seconds >= 0, got {t}")
    return MediaMessage(kind, float(t), int(aux), memoryview(data)[HEADER.size :])


def decode_audio(msg: MediaMessage, fmt: AudioFormat) -> np.ndarray:
    """-> float32 [n] (mono) or [n, channels] in [-1, 1]."""
    if msg.aux != fmt.sample_rate:
        raise _bad(
            f"audio at t={msg.t:.3f} s says {msg.aux} Hz but the stream started at {fmt.sample_rate} Hz; "
            "a stream keeps one sample rate (start a new stream to change it)"
        )
    if len(msg.payload) == 0 or len(msg.payload) % fmt.frame_bytes:
        raise _bad(
            f"audio payload of {len(msg.payload)} bytes is not a whole number of {fmt.channels}-channel "
            f"{fmt.encoding} frames ({fmt.frame_bytes} bytes each)"
        )
    x = np.frombuffer(msg.payload, AUDIO_FORMATS[fmt.encoding])
    if fmt.encoding == "pcm16":
        x = x.astype(np.float32) / 32768.0  # integers are always finite
    else:
        x = x.astype(np.float32)  # a writable, native-order copy
        if not np.isfinite(x).all():
            raise _bad(f"audio at t={msg.t:.3f} s holds NaN or infinite samples")
    return x.reshape(-1, fmt.channels) if fmt.channels > 1 else x


def image_kind(payload: memoryview | bytes) -> str | None:
    head = bytes(payload[:8])
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(PNG_MAGIC):
        return "png"
    return None


def image_size(payload: memoryview | bytes) -> tuple[int, int] | None:  # noqa: C901 - a JPEG header walk, marker by marker
    """(width, height) from a PNG's IHDR or a JPEG's frame header (SOF), read without decoding; None when
    the header does not say it (no SOF before the scan data, a zero size, a truncated segment).

    The whole JPEG is walked, segment by segment (a few steps even for a large file), since a SOF may
    follow any number of comment or APPn segments: the pixel limit must hold before the decoder runs."""
    kind = image_kind(payload)
    if kind == "png":
        b = bytes(payload[:24])
        if len(b) < 24 or b[12:16] != b"IHDR":
            return None
        w, h = struct.unpack(">II", b[16:24])
        return (int(w), int(h)) if w and h else None
    if kind != "jpeg":
        return None
    b = payload if isinstance(payload, memoryview) else memoryview(payload)
    n, i = len(b), 2
    while i + 4 <= n:
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # standalone markers: no length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header came first
            return None
        seg = (b[i + 2] << 8) | b[i + 3]
        if seg < 2:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            if i + 9 > n or seg < 7:
                return None
            h, w = (b[i + 5] << 8) | b[i + 6], (b[i + 7] << 8) | b[i + 8]
            return (int(w), int(h)) if w and h else None  # height 0: defined later (DNL), refused
        i += 2 + seg
    return None
