"""The command lines: ``run_live.py --server`` against the real server, and ``python -m engine.serve``
failing fast on what it was asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.serve.conftest import CREMAD, REPO, TOKEN, RunningServer

pytestmark = pytest.mark.timeout(300)


def test_run_live_streams_a_file_to_the_server(server: RunningServer, tmp_path) -> None:
    out = tmp_path / "events.jsonl"
    wav = CREMAD / "wav16k" / "1001_DFA_ANG_XX.wav"
    cmd = [
        sys.executable,
        "run_live.py",
        "--server",
        server.url,
        "--token",
        TOKEN,
        "--audio",
        str(wav),
        "--no-display",
        "--jsonl",
        str(out),
        "--stream-id",
        "cli",
    ]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["seq"] for e in events] == list(range(len(events))) and events[-1]["final"]
    assert events[-1]["stream"] == "cli" and "jacket" in events[-1]["transcript"].lower()
    assert f"{len(events)} events from {server.url}" in r.stderr


def test_run_live_reports_a_refused_stream_in_one_line(server: RunningServer) -> None:
    wav = CREMAD / "wav16k" / "1001_DFA_ANG_XX.wav"
    cmd = [
        sys.executable,
        "run_live.py",
        "--server",
        server.url,
        "--token",
        "not-the-token",
        "--audio",
        str(wav),
        "--no-display",
    ]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("run_live.py: error: unauthorized")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "no/such.safetensors"], "no/such.safetensors"),
        (["--set", "max_streams=0"], "max_streams"),
        (["--set", "no_such_key=1"], "no_such_key"),
        (["--token", "short"], "at least 8 characters"),
        (["--config", "no/such.yaml"], "no/such.yaml"),
        (["--set", "token=secret-in-ps-1234"], "EMOTION_SERVE_TOKEN or --token-file"),
        (["--host", "0.0.0.0"], "set a token"),
        (["--token-file", "no/such/token"], "cannot read the token file"),
        (["--ssl-certfile", "cert.pem"], "go together"),
        (["--engine-set", "window.hop_s=.nan"], "finite number"),
        (["--set", "max_gap_s=3"], "max_gap_s"),
    ],
)
def test_serve_fails_fast_with_one_line(args: list[str], message: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "engine.serve", "--port", "0", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "EMOTION_SERVE_TOKEN": ""},
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("engine.serve: error:") and message in lines[0], r.stderr


def test_the_token_is_never_read_from_a_config_file(tmp_path) -> None:
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("port: 0\ntoken: secret-in-a-file-1234\n")
    r = subprocess.run(
        [sys.executable, "-m", "engine.serve", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "not read from a file" in r.stderr and "secret-in-a-file" not in r.stderr


def test_the_token_is_not_in_the_config_repr() -> None:
    import dataclasses

    from engine.serve.config import ServeConfig

    cfg = dataclasses.replace(ServeConfig(), token=TOKEN)
    assert TOKEN not in repr(cfg) and TOKEN not in str(cfg)
