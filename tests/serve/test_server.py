"""The service end to end: a real uvicorn server process, the real client, real clips."""

from __future__ import annotations

import asyncio
import json

import av
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from engine.serve.protocol import AudioFormat
from engine.tools.client import ServerError, StreamClient, stream_file
from tests.serve.conftest import ANG, TOKEN, RunningServer

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def _no_load_left(server: RunningServer) -> None:
    """Each test starts on a quiet server (``RunningServer.wait_ready``): the streams an earlier test left
    (the hostile and fuzz tests share this server) have ended and their load has passed."""
    server.wait_ready()


def clip_audio(path=ANG) -> tuple[np.ndarray, int]:
    """The clip's own audio track at its own rate (float32 [n])."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        chunks = [f.to_ndarray() for f in c.decode(s)]
        sr = s.rate
    x = np.concatenate(
        [ch if ch.ndim == 1 else ch.reshape(-1) if ch.shape[0] == 1 else ch.mean(0) for ch in chunks]
    )
    if x.dtype.kind == "i":
        x = x.astype(np.float32) / 32768.0
    return x.astype(np.float32), sr


def assert_gapless(events) -> None:
    assert [e.seq for e in events] == list(range(len(events)))
    assert events[-1].final and not any(e.final for e in events[:-1])


async def collect(agen) -> list:
    return [ev async for ev in agen]


def test_health_ready_and_metrics(server: RunningServer) -> None:
    assert server.get("/healthz", token=None) == (200, '{"status":"ok"}')
    status, body = server.get("/readyz", token=None)
    assert status == 200 and json.loads(body)["max_streams"] == 2
    assert server.get("/metrics", token=None)[0] == 401  # the token guards metrics too
    m = server.metrics()
    assert m["emotion_capacity_streams"] == 2 and "emotion_e2e_latency_seconds_count" in m


def test_audio_and_video_clip_streams_end_to_end(server: RunningServer) -> None:
    before = server.metrics()
    client_kw = {"token": TOKEN, "stream": "av-clip"}
    events = asyncio.run(collect(stream_file(server.url, ANG, **client_kw)))
    assert_gapless(events)
    last = events[-1]
    assert last.stream == "av-clip" and last.trained and last.probs is not None
    assert last.condition == "tav", [e.modalities for e in events]
    assert "jacket" in last.transcript.lower()
    assert last.label == "ang"  # the shipped model reads this clip as angry in-process too
    after = server.metrics()
    assert after["emotion_events_total"] - before["emotion_events_total"] == len(events)
    assert after["emotion_events_sent_total"] - before["emotion_events_sent_total"] == len(events)
    assert after["emotion_active_streams"] == 0
    # The stream's CPU: the server's process CPU while it was open, and one more finished stream in the
    # per-media-second histogram (a real stream through the real models costs well above zero).
    assert after["emotion_stream_cpu_seconds_total"] > before["emotion_stream_cpu_seconds_total"]
    n = "emotion_stream_cpu_seconds_per_media_second_count"
    assert after[n] == before[n] + 1


def test_audio_only_stereo_44k_float_is_resampled(server: RunningServer) -> None:
    """Audio at the clip's own rate, sent as two-channel float32 in 100 ms chunks at real-time pace."""
    pcm, sr = clip_audio()
    stereo = np.stack([pcm, pcm], axis=1)

    async def run() -> tuple[list, dict]:
        fmt = AudioFormat("f32", sr, 2)
        async with StreamClient(
            server.url, stream="stereo", modalities=("audio",), audio=fmt, token=TOKEN
        ) as c:
            step = sr // 10
            for i in range(0, len(stereo), step):
                await c.send_audio(stereo[i : i + step], i / sr)
                await asyncio.sleep(0.1)
            await c.end()
            return await collect(c.events()), c.summary

    events, summary = asyncio.run(run())
    assert_gapless(events)
    assert summary["events"] == len(events) and summary["dropped_events"] == 0
    assert summary["cpu_s"] > 0  # its share of the server's CPU
    assert events[-1].modalities["audio"].state == "present"
    assert events[-1].modalities["video"].state != "present"
    assert "jacket" in events[-1].transcript.lower()


async def _bad_stream(
    server: RunningServer, start: dict | str | None, *messages: bytes | str
) -> tuple[int, str, dict]:
    """Send ``start`` then ``messages``; return the close code, reason and the error message received."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with connect(server.url, additional_headers=headers, max_size=None) as ws:
        error: dict = {}
        if start is not None:
            await ws.send(start if isinstance(start, str) else json.dumps(start))
        for m in messages:
            try:
                await ws.send(m)
            except Exception:  # noqa: BLE001 - the server may close before the last message
                break
        while True:
            try:
                msg = json.loads(await ws.recv())
            except ConnectionClosed:
                break
            if msg["type"] == "error":
                error = msg
        return ws.close_code, ws.close_reason, error


def _start(**kw) -> dict:
    return {
        "type": "start",
        "stream": "bad",
        "modalities": ["audio", "video"],
        "audio": {"format": "pcm16", "sample_rate": 16000, "channels": 1},
        **kw,
    }


def _audio(t: float, sr: int = 16000, n: int = 1600, fmt: AudioFormat | None = None) -> bytes:
    from engine.serve.protocol import pack_audio

    fmt = fmt or AudioFormat("pcm16", sr, 1)
    rng = np.random.default_rng(0)
    return pack_audio(0.01 * rng.standard_normal(n), t, AudioFormat(fmt.encoding, sr, fmt.channels))


def _image(t: float, payload: bytes) -> bytes:
    from engine.serve.protocol import pack_image

    return pack_image(payload, t)


def _png_flat(h: int, w: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.zeros((h, w, 3), np.uint8))  # compresses to a few kB
    assert ok
    return buf.tobytes()


def _jpeg(h: int = 120, w: int = 160) -> bytes:
    import cv2

    frame = av.open(str(ANG)).decode(video=0).__next__().to_ndarray(format="bgr24")
    ok, buf = cv2.imencode(".jpg", cv2.resize(frame, (w, h)))
    assert ok
    return buf.tobytes()


BAD_CASES = {
    "malformed JSON": ("{not json", [], 1007, "malformed JSON"),
    "first message binary": (None, [b"EM\x01\x01" + bytes(12)], 1007, "first message must be"),
    "unknown override": (_start(overrides={"checkpoint": "x.safetensors"}), [], 1008, "not allowed"),
    "override of the wrong type": (_start(overrides={"window.hop_s": "fast"}), [], 1007, "wrong type"),
    "override value out of range": (_start(overrides={"window.hop_s": 9.0}), [], 1007, "bad override value"),
    "unsupported sample rate": (
        _start(audio={"format": "pcm16", "sample_rate": 1000}),
        [],
        1007,
        "sample_rate",
    ),
    "sample rate changes": (_start(), [_audio(0.0), _audio(0.1, sr=44100, n=4410)], 1007, "one sample rate"),
    "malformed header": (_start(), [b"XX" + bytes(30)], 1007, "bad binary header"),
    "header too short": (_start(), [b"EM\x01"], 1007, "16-byte header"),
    "half a sample": (_start(), [_audio(0.0)[:-1]], 1007, "whole number"),
    "oversized message": (
        _start(),
        [_image(0.0, b"\xff\xd8\xff" + bytes(300_000))],
        1009,
        "exceeds the limit",
    ),
    "oversized image": (_start(), [_image(0.0, _png_flat(3000, 4000))], 1009, "pixels exceeds"),
    "not an image": (_start(), [_image(0.0, b"GIF89a" + bytes(100))], 1003, "not a JPEG or PNG"),
    "broken JPEG": (_start(), [_image(0.0, b"\xff\xd8\xff\xe0" + bytes(100))], 1003, "not a readable"),
    "audio time goes backwards": (_start(), [_audio(1.0), _audio(0.5)], 1007, "went backwards"),
    "video time goes backwards": (
        _start(),
        [_image(1.0, _jpeg()), _image(0.5, _jpeg())],
        1007,
        "must increase",
    ),
    "video not announced": (_start(modalities=["audio"]), [_image(0.0, _jpeg())], 1007, "did not list video"),
    "no start in time": (None, [], 4408, "no start message"),
    "unknown message type": (_start(), ['{"type": "pause"}'], 1007, "unexpected message type"),
}


def test_each_bad_input_ends_only_its_stream(server: RunningServer) -> None:
    """Every fault gets its own error message and close code while a good stream runs beside them; the
    good stream loses nothing and the server stays up."""

    async def run() -> tuple[list, dict[str, tuple[int, str, dict]]]:
        good = asyncio.create_task(collect(stream_file(server.url, ANG, token=TOKEN, stream="good")))
        await asyncio.sleep(0.5)
        results = {}
        for name, (start, msgs, _, _) in BAD_CASES.items():
            results[name] = await _bad_stream(server, start, *msgs)
            for _ in range(100):  # its slot is free once its engine is closed
                if server.metrics()["emotion_active_streams"] <= 1:
                    break
                await asyncio.sleep(0.05)
        return await good, results

    before = server.metrics()
    good, results = asyncio.run(run())
    for name, (_, _, code, text) in BAD_CASES.items():
        got_code, reason, error = results[name]
        assert got_code == code, (name, got_code, reason, error)
        assert error.get("code") == code and text in error.get("message", ""), (name, error)
        assert reason and reason in error["message"] or reason.endswith("..."), (name, reason)
    assert_gapless(good)
    assert "jacket" in good[-1].transcript.lower()
    after = server.metrics()
    assert after['emotion_stream_errors_total{kind="client"}'] - before.get(
        'emotion_stream_errors_total{kind="client"}', 0
    ) == len(BAD_CASES)
    assert after["emotion_active_streams"] == 0 and server.get("/healthz")[0] == 200


def test_missing_or_bad_token_is_refused(server: RunningServer) -> None:
    async def attempt(token: str | None) -> ServerError:
        with pytest.raises(ServerError) as e:
            await StreamClient(server.url, stream="no-token", token=token).connect()
        return e.value

    for token in (None, "wrong-token-123", TOKEN + "x"):
        err = asyncio.run(attempt(token))
        assert err.code == 1008 and "unauthorized" in err.message


def test_client_leaving_mid_stream_frees_its_slot(server: RunningServer) -> None:
    before = server.metrics()

    async def run() -> None:
        c = StreamClient(server.url, stream="leaver", modalities=("audio",), token=TOKEN)
        await c.connect()
        pcm, _ = clip_audio()
        await c.send_audio(pcm[:8000], 0.0)  # half a second at the declared 16 kHz
        c.ws.transport.abort()  # then the connection breaks: no close frame, no end message

    asyncio.run(run())
    for _ in range(50):
        m = server.metrics()
        if m["emotion_active_streams"] == 0:
            break
        asyncio.run(asyncio.sleep(0.1))
    assert m["emotion_active_streams"] == 0
    assert m["emotion_client_disconnects_total"] - before["emotion_client_disconnects_total"] == 1


def test_streams_beyond_capacity_are_refused_at_once_with_the_reason(server: RunningServer) -> None:
    async def run() -> tuple[ServerError, float, int, list, list]:
        pcm, sr = clip_audio()
        fmt = AudioFormat("f32", sr, 1)
        holders = [
            StreamClient(server.url, stream=f"hold-{i}", modalities=("audio",), audio=fmt, token=TOKEN)
            for i in range(2)
        ]
        for h in holders:
            await h.connect()
        for h in holders:
            await h.send_audio(pcm[:sr], 0.0)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ServerError) as e:
            await StreamClient(server.url, stream="third", token=TOKEN).connect()
        took = loop.time() - t0
        ready = server.get("/readyz", token=None)[0]
        for h in holders:  # the admitted streams go on undisturbed
            await h.send_audio(pcm[sr:], 1.0)
            await h.end()
        results = [await collect(h.events()) for h in holders]
        return e.value, took, ready, results, [h.summary for h in holders]

    err, took, ready, results, summaries = asyncio.run(run())
    assert err.code == 1013 and "at capacity: 2 of 2" in err.message
    assert took < 2.0 and ready == 503
    for events, summary in zip(results, summaries, strict=True):
        assert_gapless(events)
        assert summary["events"] == len(events)
    assert server.metrics()['emotion_rejections_total{reason="capacity"}'] >= 1
    assert server.get("/readyz", token=None)[0] == 200
