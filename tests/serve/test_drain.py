"""A deploy without dropping a call, on its own server process: TLS (wss://), the token from a file,
a maximum stream duration, and SIGTERM in the middle of a live stream.

SIGTERM stops admitting at once (``/readyz`` 503 "server draining", new streams 1013) and lets the live
stream run for ``drain_s``; then the stream gets every event up to its final one, the summary, and a
close with 1001 "server shutting down"; the process exits 0 within ``drain_s`` + 5 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from engine.serve.protocol import AudioFormat
from engine.tools.client import ServerError, StreamClient
from tests.serve.conftest import REPO, TOKEN, free_port
from tests.serve.test_server import assert_gapless, clip_audio

pytestmark = pytest.mark.timeout(300)
# The drained stream runs MAX_STREAM_S - 0.5 s of media and SIGTERM comes with its second event (about
# 2-3 s in), so its media must outlast SIGTERM + DRAIN_S by a margin, or it ends on its own first.
DRAIN_S, MAX_STREAM_S = 3.0, 9.0


def self_signed(tmp: Path) -> tuple[Path, Path] | None:
    """A certificate for 127.0.0.1 and its key, made by the openssl command (None without one: the
    drain is then tested over plain ws://)."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    cmd = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
           "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]  # fmt: skip
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return (cert, key) if r.returncode == 0 else None


def _https_get(port: int, path: str, ctx: ssl.SSLContext | None) -> tuple[int, dict]:
    scheme = "https" if ctx is not None else "http"
    try:
        with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}{path}", timeout=5, context=ctx) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def _stream_audio(
    c: StreamClient, seconds: float, on_event=None
) -> tuple[list, dict | None, int | None]:
    """Send a real clip's audio, looped, at real-time pace until ``seconds`` or the server closes;
    collect the events as they come."""
    pcm, sr = clip_audio()
    pcm = np.tile(pcm, int(np.ceil(seconds * sr / len(pcm)) + 1))
    events: list = []

    async def feed() -> None:
        step = sr // 10
        t0 = time.monotonic()
        for i in range(0, int(seconds * sr), step):
            try:
                await c.send_audio(pcm[i : i + step], i / sr)
            except Exception:  # noqa: BLE001 - the server closed the stream
                return
            await asyncio.sleep(max(0.0, t0 + (i + step) / sr - time.monotonic()))
        await c.end()

    feeder = asyncio.create_task(feed())
    async for ev in c.events():
        events.append(ev)
        if on_event is not None:
            await on_event(ev)
    feeder.cancel()
    return events, c.summary, c.ws.close_code


def test_tls_token_file_max_duration_and_drain_on_sigterm(tmp_path: Path) -> None:
    tls = self_signed(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    cmd = [
        sys.executable, "-m", "engine.serve", "--port", str(port), "--token-file", str(token_file),
        "--set", f"drain_s={DRAIN_S}", "--set", f"max_stream_s={MAX_STREAM_S}", "--log-level", "warning",
    ]  # fmt: skip
    if tls is not None:
        cmd += ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])]
    env = {**os.environ, "EMOTION_SERVE_TOKEN": ""}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ctx = ssl.create_default_context(cafile=str(tls[0])) if tls is not None else None
    url = f"{'wss' if tls is not None else 'ws'}://127.0.0.1:{port}/v1/stream"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}: {proc.stderr.read().decode()[-3000:]}")
            try:
                if _https_get(port, "/readyz", ctx)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server not ready within 300 s"
            time.sleep(0.5)

        def client(name: str) -> StreamClient:
            fmt = AudioFormat("f32", clip_audio()[1], 1)
            return StreamClient(
                url, stream=name, modalities=("audio",), audio=fmt, token=TOKEN, ssl_context=ctx
            )

        async def long_stream() -> tuple[list, dict | None, int | None]:
            async with client("long") as c:
                return await _stream_audio(c, 3 * MAX_STREAM_S)

        events, summary, code = asyncio.run(long_stream())
        assert_gapless(events)
        assert code == 1000 and summary["ended"] == f"maximum stream duration of {MAX_STREAM_S:g} s reached"
        assert events[-1].t_end <= MAX_STREAM_S + 1.5

        seen: dict = {}

        async def drained_stream() -> tuple[list, dict | None, int | None]:
            async with client("call") as c:

                async def on_event(ev) -> None:
                    if ev.seq == 1 and "sigterm" not in seen:
                        proc.send_signal(signal.SIGTERM)
                        seen["sigterm"] = time.monotonic()
                        await asyncio.sleep(0.5)
                        seen["readyz"] = await asyncio.to_thread(_https_get, port, "/readyz", ctx)
                        try:
                            await client("late").connect()
                        except ServerError as e:
                            seen["late"] = (e.code, e.message)

                return await _stream_audio(c, MAX_STREAM_S - 0.5, on_event)

        events, summary, code = asyncio.run(drained_stream())
        ended_at = time.monotonic()
        rc = proc.wait(timeout=DRAIN_S + 5)
        exited_at = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen["readyz"][0] == 503 and "draining" in seen["readyz"][1]["reason"]
    assert seen["late"][0] == 1013 and "draining" in seen["late"][1]
    assert_gapless(events)
    assert code == 1001 and summary["ended"] == "server shutting down" and summary["events"] == len(events)
    assert DRAIN_S - 0.5 <= ended_at - seen["sigterm"] <= DRAIN_S + 3.0
    assert rc == 0 and exited_at - seen["sigterm"] <= DRAIN_S + 5.0
    err = proc.stderr.read().decode()
    assert "Traceback" not in err and TOKEN not in err, err[-3000:]
