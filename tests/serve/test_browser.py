"""The live page in a real browser: headless Chromium (the distribution's package) with its fake camera
and microphone fed from a bundled face + voice clip, against the real server, for about 30 s.

The page is driven as a person would: the token typed in once (kept in the tab's session storage, never
in the URL), then ``/?autostart=1``. The test reads the page through the DevTools protocol and checks
that events arrive with audio and video present, that the transcript shows the clip's words, that the
class bars move, and that the console stays free of errors. A screenshot is kept as an artifact.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from websockets.asyncio.client import connect

from tests.serve.conftest import ANG, CREMAD, REPO, TOKEN, RunningServer, stop_process

pytestmark = pytest.mark.timeout(300)
RUN_S = float(os.environ.get("EMOTION_BROWSER_S", "30"))
ARTIFACTS = Path(os.environ.get("EMOTION_TEST_ARTIFACTS", REPO / "out" / "test-artifacts"))


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.skip("no chromium on PATH: install the distribution's package (apt-get install chromium)")


def write_y4m(src: Path, dst: Path) -> None:
    """The clip's frames as YUV4MPEG2 (4:2:0), the format of Chromium's fake camera."""
    with av.open(str(src)) as c, open(dst, "wb") as f:
        s = c.streams.video[0]
        fps = s.average_rate or 30
        header = False
        for frame in c.decode(s):
            yuv = frame.reformat(format="yuv420p").to_ndarray()  # [H * 3/2, W]
            if not header:
                h, w = frame.height, frame.width
                f.write(f"YUV4MPEG2 W{w} H{h} F{fps.numerator}:{fps.denominator} Ip A1:1 C420jpeg\n".encode())
                header = True
            f.write(b"FRAME\n" + np.ascontiguousarray(yuv).tobytes())


def write_wav(src: Path, dst: Path) -> None:
    """The clip's 16 kHz speech as 48 kHz 16-bit mono PCM, the fake microphone's own rate."""
    from scipy.signal import resample_poly

    with wave.open(str(src)) as w:
        sr, x = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32)
    y = np.clip(resample_poly(x, 48000 // np.gcd(48000, sr), sr // np.gcd(48000, sr)), -32768, 32767)
    with wave.open(str(dst), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(y.astype("<i2").tobytes())


class DevTools:
    """The smallest client of the Chrome DevTools protocol: commands, and the events kept as they come."""

    def __init__(self, ws) -> None:  # noqa: ANN001
        self.ws, self.n, self.pending, self.events = ws, 0, {}, []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg and msg["id"] in self.pending:
                self.pending.pop(msg["id"]).set_result(msg)
            elif "method" in msg:
                self.events.append(msg)

    async def call(self, method: str, **params) -> dict:  # noqa: ANN003
        self.n += 1
        fut = asyncio.get_running_loop().create_future()
        self.pending[self.n] = fut
        await self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        msg = await asyncio.wait_for(fut, 30)
        assert "error" not in msg, msg
        return msg["result"]

    async def js(self, expr: str):  # noqa: ANN201
        r = await self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in r, r
        return r["result"].get("value")

    def console_errors(self) -> list[str]:
        out = []
        for e in self.events:
            p = e["params"]
            if e["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif e["method"] == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("exception", {}).get("description", str(p)))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(p["entry"]["text"] + " " + p["entry"].get("url", ""))
        return out


def test_the_live_page_streams_a_real_clip_in_chromium(server: RunningServer, tmp_path: Path) -> None:
    exe = chromium()
    server.wait_ready()
    y4m, wav = tmp_path / "clip.y4m", tmp_path / "clip.wav"
    write_y4m(ANG, y4m)
    write_wav(CREMAD / "wav16k" / "1001_DFA_ANG_XX.wav", wav)
    profile = tmp_path / "profile"
    cmd = [
        exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1280,1000",
        "--no-default-browser-check",
        f"--user-data-dir={profile}", "--remote-debugging-port=0", "--remote-allow-origins=*",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}", f"--use-file-for-fake-audio-capture={wav}",
        "--autoplay-policy=no-user-gesture-required", "about:blank",
    ]  # fmt: skip
    browser = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    page_url = f"http://127.0.0.1:{server.port}/"
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert browser.poll() is None, f"chromium exited with {browser.returncode}"
            assert time.monotonic() < deadline, "chromium opened no DevTools port within 60 s"
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            target = next(t for t in json.loads(r.read()) if t["type"] == "page")

        async def drive() -> tuple[list, dict, list[str], bytes]:
            async with connect(target["webSocketDebuggerUrl"], max_size=None) as ws:
                dt = DevTools(ws)
                for domain in ("Runtime", "Log", "Page"):
                    await dt.call(f"{domain}.enable")
                # The person allows the camera and the microphone for this page (the permission prompt).
                for name in ("camera", "microphone"):
                    await dt.call(
                        "Browser.setPermission",
                        permission={"name": name},
                        setting="granted",
                        origin=page_url[:-1],
                    )
                await dt.call("Page.navigate", url=page_url)
                await asyncio.sleep(2.0)
                # The person types the token once; the page keeps it for this tab only.
                await dt.js(f"sessionStorage.setItem('emotion-token', {json.dumps(TOKEN)})")
                await dt.call("Page.navigate", url=page_url + "?autostart=1")
                samples = []
                t0 = time.monotonic()
                while time.monotonic() - t0 < RUN_S:
                    await asyncio.sleep(1.0)
                    samples.append(
                        await dt.js(
                            "({events: __emotion.events, last: __emotion.last, errors: __emotion.errors,"
                            " closes: __emotion.closes, status: $status.textContent,"
                            " committed: document.getElementById('committed').textContent,"
                            " bars: [...document.querySelectorAll('#bars .fill')]"
                            ".map(e => e.style.width).join(),"
                            " error: $error.hidden ? '' : $error.textContent})".replace(
                                "$status", "document.getElementById('status')"
                            ).replace("$error", "document.getElementById('error')")
                        )
                    )
                shot = await dt.call("Page.captureScreenshot", format="png")
                final = samples[-1]
                console = dt.console_errors()
                # A person who denies the camera: the page says so and streams the voice alone.
                await dt.call(
                    "Browser.setPermission",
                    permission={"name": "camera"},
                    setting="denied",
                    origin=page_url[:-1],
                )
                await dt.call("Page.navigate", url=page_url + "?autostart=1")
                await asyncio.sleep(8.0)
                denied = await dt.js(
                    "({last: __emotion.last, error: document.getElementById('error').textContent})"
                )
                # A wrong token: refused, and the page says why.
                await dt.js("sessionStorage.setItem('emotion-token', 'not-the-token')")
                await dt.call("Page.navigate", url=page_url + "?autostart=1")
                await asyncio.sleep(3.0)
                refused = await dt.js("document.getElementById('error').textContent")
                return samples, final, console, base64.b64decode(shot["data"]), denied, refused

        samples, final, console, png, denied, refused = asyncio.run(drive())
    finally:
        stop_process(browser, timeout=10)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "browser-live-page.png").write_bytes(png)
    assert final["events"] >= 0.5 * RUN_S, final  # about one per second of media
    last = final["last"]
    assert last["modalities"]["audio"]["state"] == "present", last["modalities"]
    assert last["modalities"]["video"]["state"] == "present", last["modalities"]
    assert last["face"] and last["experts"].get("face"), last
    assert "jacket" in final["committed"].lower(), final["committed"]
    assert len({s["bars"] for s in samples if s["bars"]}) >= 3, [s["bars"] for s in samples]
    assert not final["errors"] and not final["error"] and not final["closes"], final
    assert not console, console
    assert png.startswith(b"\x89PNG")
    assert "camera access was denied" in denied["error"], denied["error"]
    assert denied["last"]["modalities"]["audio"]["state"] == "present"
    video = denied["last"]["modalities"]["video"]  # not streamed: missing, or reconstructed from the others
    assert video["state"] in ("missing", "reconstructed") and "no video source" in video["reason"], video
    assert "refused: unauthorized" in refused and "check the token" in refused, refused
