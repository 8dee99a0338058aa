"""The JSONL record (modes, fsync, a write failure stops the stream) and how run_live.py ends: SIGINT
and SIGTERM close the window in progress as the final event, and a server that drains for a restart
ends the stream with one line."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import run_live
from engine.frames import EmotionEvent, ModalityHealth
from engine.sinks import CallbackSink, JSONLSink
from engine.sinks.runner import SinkRunner
from engine.tools import live_command
from tests.engine.media import ANG, ROOT
from tests.engine.test_replay import Proxy

AV_STREAM = ROOT / "tests" / "data" / "streams" / "cremad_1001_x5.mp4"  # 64 s of the bundled clips
DEV_FULL = Path("/dev/full")  # Linux: every write fails with ENOSPC, as on a full disk
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full (Linux)")


def event(seq: int, final: bool = False) -> EmotionEvent:
    return EmotionEvent(
        seq=seq,
        stream="test",
        t_start=max(0.0, seq - 3.0),
        t_end=seq + 1.0,
        wall_time=time.time(),
        probs={"ang": 0.7, "hap": 0.1, "neu": 0.1, "sad": 0.1},
        label="ang",
        condition="a",
        modalities={"audio": ModalityHealth("present"), "video": ModalityHealth("missing", "no frames")},
        transcript="don't forget a jacket",
        final=final,
    )


def run_sinks(sinks: list, events: list[EmotionEvent]) -> tuple[list[str], list[str]]:
    """Deliver ``events`` through a SinkRunner wired like the engine's; returns (errors, fatal)."""
    errors: list[str] = []
    fatal: list[str] = []

    async def go() -> None:
        runner = SinkRunner(sinks, errors.append, 5.0, on_fatal=fatal.append)
        await runner.start({})
        for ev in events:
            runner.put(ev)
            await asyncio.sleep(0)
        await runner.close()

    asyncio.run(asyncio.wait_for(go(), 30))
    return errors, fatal


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# -- the JSONL sink ---------------------------------------------------------------------------------------
def test_jsonl_refuses_a_file_with_events_unless_told(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    old = event(0).to_json() + "\n"
    path.write_text(old)
    with pytest.raises(FileExistsError) as e:
        JSONLSink(path).check()
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and str(path) in msg and "--append" in msg and "--overwrite" in msg
    # An engine that was not told to check first stops at start with the same line; the file is kept.
    errors, fatal = run_sinks([JSONLSink(path)], [event(0), event(1)])
    assert fatal == [f"sink jsonl: FileExistsError: {msg}"] and path.read_text() == old
    assert errors == ["sink jsonl: 2 event(s) not delivered after it failed"]
    # An empty file and a new one are fine.
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    JSONLSink(empty).check()
    JSONLSink(tmp_path / "new" / "events.jsonl").check()
    with pytest.raises(IsADirectoryError, match="is a folder"):
        JSONLSink(tmp_path).check()
    with pytest.raises(ValueError, match="mode must be one of new, append, overwrite"):
        JSONLSink(path, mode="replace")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_jsonl_refuses_a_folder_it_cannot_write(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(PermissionError, match="is not writable"):
        JSONLSink(locked / "sub" / "events.jsonl").check()


def test_jsonl_append_and_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    # A run that was killed mid-line: appending keeps that line apart instead of gluing the next to it.
    path.write_text(event(0).to_json() + "\n" + event(1).to_json()[:40])
    assert run_sinks([JSONLSink(path, mode="append")], [event(0), event(1, final=True)]) == ([], [])
    rows = path.read_text().splitlines()
    assert len(rows) == 4 and json.loads(rows[0])["seq"] == 0
    with pytest.raises(json.JSONDecodeError):
        json.loads(rows[1])
    assert [json.loads(r)["seq"] for r in rows[2:]] == [0, 1] and json.loads(rows[3])["final"]
    assert run_sinks([JSONLSink(path, mode="overwrite")], [event(0), event(1)]) == ([], [])
    assert [d["seq"] for d in lines(path)] == [0, 1]


def test_jsonl_fsyncs_on_close_and_periodically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "events.jsonl"
    run_sinks([JSONLSink(path, fsync_s=None)], [event(i) for i in range(5)])
    ino = path.stat().st_ino
    assert synced == [ino]  # on close only
    synced.clear()
    run_sinks([JSONLSink(path, mode="overwrite", fsync_s=0)], [event(i) for i in range(5)])
    assert synced == [ino] * 6  # after each event, and on close
    assert [d["seq"] for d in lines(path)] == list(range(5))


@needs_dev_full
def test_a_full_disk_stops_the_stream_with_one_line() -> None:
    seen: list[int] = []
    jsonl = JSONLSink(DEV_FULL)
    errors, fatal = run_sinks(
        [jsonl, CallbackSink(lambda e: seen.append(e.seq))], [event(i) for i in range(5)]
    )
    assert fatal == ["sink jsonl: OSError: cannot write event 0 to /dev/full: No space left on device"]
    assert jsonl.failed and errors == ["sink jsonl: 4 event(s) not delivered after it failed"]
    assert seen == [0, 1, 2, 3, 4]  # the other sinks are not held back


def test_a_write_failure_mid_stream_keeps_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    jsonl = JSONLSink(path)
    fatal: list[str] = []
    errors: list[str] = []

    async def go() -> None:
        runner = SinkRunner([jsonl], errors.append, 5.0, on_fatal=fatal.append)
        await runner.start({})
        for i in range(5):
            if i == 2:  # the disk fills up after two events
                f = jsonl._f
                assert f is not None

                def full(data: str) -> int:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

                f.write = full  # type: ignore[method-assign]
            runner.put(event(i))
            await asyncio.sleep(0.05)
        await runner.close()

    asyncio.run(asyncio.wait_for(go(), 30))
    assert fatal == [f"sink jsonl: OSError: cannot write event 2 to {path}: No space left on device"]
    assert errors == ["sink jsonl: 2 event(s) not delivered after it failed"]
    assert [d["seq"] for d in lines(path)] == [0, 1]


def test_without_on_fatal_a_failed_fatal_sink_is_reported_once(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("{}\n")
    errors: list[str] = []

    async def go() -> None:
        runner = SinkRunner([JSONLSink(path)], errors.append, 5.0)
        await runner.start({})
        for i in range(3):
            runner.put(event(i))
        await runner.close()

    asyncio.run(go())
    assert len(errors) == 2 and errors[0].startswith("sink jsonl: FileExistsError: ")
    assert errors[1] == "sink jsonl: 3 event(s) not delivered after it failed"


# -- run_live.py: the output file ------------------------------------------------------------------------
QUICK = ["--fast", "--no-display", "--backend", "torch", "--max-seconds", "1.0", "--set", "asr.enabled=false"]


def test_run_live_refuses_an_existing_jsonl_before_loading_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def no_models(cfg: Any) -> None:
        raise AssertionError("models were loaded")

    monkeypatch.setattr("engine.core.loading.load_extractors", no_models)
    out = tmp_path / "events.jsonl"
    out.write_text(event(0).to_json() + "\n")
    assert run_live.main(["--video", str(ANG), *QUICK, "--jsonl", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"run_live.py: error: {out} exists and is not empty: pass --append (mode='append') to add to it or "
        "--overwrite (mode='overwrite') to replace it"
    ]
    assert len(lines(out)) == 1
    with pytest.raises(SystemExit) as e:
        run_live.parse_args(["--video", str(ANG), "--append"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        run_live.parse_args(["--video", str(ANG), "--jsonl", str(out), "--append", "--overwrite"])
    demo = run_live.parse_args(["--demo"])
    assert demo.overwrite and not demo.append  # the demo replaces its own output
    assert run_live.parse_args(["--demo", "--jsonl", str(out)]).overwrite is False


def test_run_live_appends_when_asked(
    extractors: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(
        "engine.core.loading.load_extractors", lambda cfg: Proxy(extractors, close=lambda: None)
    )
    out = tmp_path / "events.jsonl"
    old = event(0).to_json() + "\n"
    out.write_text(old)
    assert run_live.main(["--video", str(ANG), *QUICK, "--jsonl", str(out), "--append"]) == 0
    rows = lines(out)
    assert out.read_text().startswith(old) and len(rows) >= 2
    assert [d["seq"] for d in rows[1:]] == list(range(len(rows) - 1)) and rows[-1]["final"]


@needs_dev_full
def test_run_live_stops_on_a_full_disk_with_one_line(
    extractors: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(
        "engine.core.loading.load_extractors", lambda cfg: Proxy(extractors, close=lambda: None)
    )
    rc = run_live.main(["--video", str(AV_STREAM), "--fast", "--no-display", "--backend", "torch",
                        "--set", "asr.enabled=false", "--jsonl", str(DEV_FULL)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1, err
    assert err[-1].startswith("run_live.py: error: stream stopped after ")
    assert err[-1].endswith(
        ": sink jsonl: OSError: cannot write event 0 to /dev/full: No space left on device"
    )
    n = int(err[-1].split("stream stopped after ")[1].split()[0])
    assert n < 10  # stopped at once, not after the 64 s of media


# -- run_live.py: signals --------------------------------------------------------------------------------
def start_run_live(out: Path, log: Path) -> subprocess.Popen:
    """run_live.py on the 64 s fixture at real-time pace, writing JSONL; stderr goes to ``log``."""
    cmd = [sys.executable, "run_live.py", "--video", str(AV_STREAM), "--no-display", "--jsonl", str(out),
           "--backend", "torch", "--set", "asr.enabled=false", "--set", "window.hop_s=0.5"]  # fmt: skip
    with open(log, "w") as err:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)


def wait_for_events(proc: subprocess.Popen, out: Path, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not (out.exists() and len(out.read_text().splitlines()) >= n):
        assert proc.poll() is None, f"run_live.py exited early with {proc.returncode}"
        assert time.monotonic() < deadline, f"no {n} events after {timeout} s"
        time.sleep(0.1)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_the_stream_with_its_final_event(tmp_path: Path, sig: signal.Signals) -> None:
    out, log = tmp_path / "events.jsonl", tmp_path / "stderr.txt"
    proc = start_run_live(out, log)
    try:
        wait_for_events(proc, out, 3)
        proc.send_signal(sig)
        t0 = time.monotonic()
        rc = proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
    err = log.read_text()
    assert rc == 0, err
    assert took < 15, took
    rows = lines(out)
    assert [d["seq"] for d in rows] == list(range(len(rows)))
    assert rows[-1]["final"] is True and not any(d["final"] for d in rows[:-1])
    assert rows[-1]["t_end"] < 30  # ended by the signal, not by the end of the 64 s of media
    assert f"run_live.py: {sig.name}: ending the stream" in err
    assert f"{len(rows)} events, written to {out}" in err


@pytest.mark.timeout(300)
def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    out, log = tmp_path / "events.jsonl", tmp_path / "stderr.txt"
    proc = start_run_live(out, log)
    try:
        wait_for_events(proc, out, 2)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    err = log.read_text()
    assert rc == 128 + signal.SIGINT, err
    assert "run_live.py: SIGINT: stopping now" in err
    rows = lines(out)
    assert [d["seq"] for d in rows] == list(range(len(rows)))  # what was written is complete lines


# -- run_live.py --server: the server drains for a restart ------------------------------------------------
def test_server_shutdown_line() -> None:
    summary = {"type": "summary", "events": 7, "last_seq": 6, "ended": "server shutting down"}
    assert (
        live_command.server_shutdown_line(summary, 7, 6)
        == "run_live.py: server shutting down: stream ended after 7 events (last seq 6)"
    )
    assert live_command.server_shutdown_line(summary, 0, None) == (
        "run_live.py: server shutting down: stream ended after 0 events"
    )
    assert live_command.server_shutdown_line({"type": "summary", "ended": "end of stream"}, 7, 6) is None
    assert live_command.server_shutdown_line(None, 0, None) is None


class DrainingServer:
    """Speaks the stream protocol (docs/serve.md) like a server that drains for a deploy: after some of
    the media it sends its events (the last one final), a summary that says it is shutting down, and
    closes with 1001 while the client is still sending."""

    def __init__(self, n_events: int) -> None:
        self.n_events = n_events
        self.url = ""
        self.received = 0
        self._ready = threading.Event()
        self._stop: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _handler(self, ws: Any) -> None:
        start = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "ready", "stream": start.get("stream"), "model": "test"}))
        async for _ in ws:  # media
            self.received += 1
            if self.received == 10:
                break
        for i in range(self.n_events):
            ev = event(i, final=i == self.n_events - 1)
            await ws.send(json.dumps({"type": "event", "event": ev.to_dict()}))
        last = self.n_events - 1
        summary = {
            "type": "summary",
            "events": self.n_events,
            "last_seq": last,
            "ended": "server shutting down",
        }
        await ws.send(json.dumps(summary))
        await ws.close(1001, "server shutting down")

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(self._handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/v1/stream"
            self._ready.set()
            await self._stop

    def __enter__(self) -> DrainingServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)


def test_run_live_reports_a_draining_server_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "events.jsonl"
    with DrainingServer(n_events=3) as server:
        argv = ["--audio", str(AV_STREAM), "--server", server.url, "--no-display", "--jsonl", str(out)]
        t0 = time.monotonic()
        rc = run_live.main(argv)
        took = time.monotonic() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 0
    assert err == ["run_live.py: server shutting down: stream ended after 3 events (last seq 2)"]
    assert took < 20  # it did not play the rest of the 64 s first
    rows = lines(out)
    assert [d["seq"] for d in rows] == [0, 1, 2] and rows[-1]["final"]
