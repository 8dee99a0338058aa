"""A real ``python -m engine.serve`` process on 127.0.0.1 (a free port), shared by the tests of this folder.

Limits are lowered so that each fault is cheap to provoke: 2 streams, 256 KiB messages, a 3 s start
timeout. The token is set, so every client here also proves that the token check lets it in.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CREMAD = REPO / "data" / "cremad"
ANG = CREMAD / "1001_DFA_ANG_XX.flv"
TOKEN = "test-token-6d1f"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    port: int
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def get(self, path: str, token: str | None = TOKEN) -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self) -> dict[str, float]:
        """/metrics as {'name{labels}': value}."""
        status, text = self.get("/metrics")
        assert status == 200, text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out


@pytest.fixture(scope="session")
def server() -> Iterator[RunningServer]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "engine.serve",
        "--port",
        str(port),
        "--token",
        TOKEN,
        "--max-streams",
        "2",
        "--set",
        "max_message_bytes=262144",
        "--set",
        "start_timeout_s=3",
        "--set",
        "idle_timeout_s=10",
        "--log-level",
        "warning",
    ]
    env = {**os.environ, "EMOTION_SERVE_TOKEN": ""}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    srv = RunningServer(port, proc)
    deadline = time.monotonic() + 300
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}: {proc.stderr.read().decode()[-3000:]}")
            try:
                if srv.get("/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("server not ready within 300 s")
            time.sleep(0.5)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    err = proc.stderr.read().decode()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal: -15 is its normal exit code.
    assert proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in err, (proc.returncode, err[-3000:])
