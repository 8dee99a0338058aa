"""The live command's parts (``run_live.py``): sources and sinks from its options, the checks of what
it was asked for at start, clean ends on SIGINT / SIGTERM, and the mode that streams to a server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any


def _device(v: str) -> int | str:
    return int(v) if v.isdigit() else v


def build_sources(args: argparse.Namespace) -> list:
    from engine.sources import CameraSource, FileReplaySource, MicrophoneSource

    sources: list = []
    ms = args.max_seconds
    if args.camera is not None:
        sources.append(CameraSource(_device(args.camera), max_seconds=ms))
        if args.mic is None and not args.no_mic:
            sources.append(MicrophoneSource(None, max_seconds=ms))
    if args.mic is not None:
        sources.append(MicrophoneSource(None if args.mic == "default" else _device(args.mic), max_seconds=ms))
    if args.video:
        sources.append(
            FileReplaySource(args.video, fast=args.fast, audio=not args.audio, video=True, max_seconds=ms)
        )
    if args.audio:
        sources.append(
            FileReplaySource(
                args.audio,
                fast=args.fast,
                audio=True,
                video=False,
                max_seconds=ms,
                name=f"{Path(args.audio).name}:audio",
            )
        )
    return sources


def check_files(sources: list) -> str | None:
    """The one-line error of the first file source that cannot be replayed, or None."""
    from engine.sources.file_replay import FileReplaySource, MediaFileError

    try:
        for src in sources:
            if isinstance(src, FileReplaySource):
                src.check()
    except MediaFileError as e:
        return str(e)
    return None


def build_sinks(args: argparse.Namespace) -> list:
    from engine.sinks import JSONLSink, console_sink

    sinks: list = []
    if not args.no_display:
        sinks.append(console_sink(force_plain=args.plain))
    if args.jsonl:
        mode = "append" if args.append else "overwrite" if args.overwrite else "new"
        sinks.append(JSONLSink(args.jsonl, mode=mode))
    return sinks


def check_sinks(sinks: list) -> str | None:
    """The one-line error of the first sink that cannot write (an existing --jsonl file), or None."""
    for sink in sinks:
        try:
            sink.check()
        except OSError as e:
            return str(e)
    return None


def end_sources(sources: list) -> None:
    """Ask every source to end now. Each sends its EndFrame at the media time it reached, so the engine
    (or the server) closes the window in progress as the final event."""
    for src in sources:
        stop = getattr(src, "stop", None)
        if callable(stop):
            stop()  # file replay
        else:
            src.max_seconds = 0.0  # camera, microphone: they check their limit before each read


class Shutdown:
    """SIGINT and SIGTERM while streaming. The first ends the sources: the window in progress becomes
    the final event, the sinks are flushed and closed, and the exit status is 0. The second stops at
    once (the window in progress is lost; the sinks are still closed): exit status 128 + its number. A
    third gets the signal's default action. Before ``install`` (models loading) the defaults apply."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None  # the last signal received
        self._loop: asyncio.AbstractEventLoop | None = None
        self._installed: list[int] = []
        self._task: asyncio.Task | None = None
        self._sources: list = []

    def install(self, sources: list) -> None:
        """Handle the signals from here on (call from the task to stop on the second signal)."""
        self._loop, self._task, self._sources = asyncio.get_running_loop(), asyncio.current_task(), sources
        try:
            for sig in self.SIGNALS:
                self._loop.add_signal_handler(sig, self._on_signal, sig)
                self._installed.append(sig)
        except (NotImplementedError, RuntimeError):  # no loop signal handling here: the defaults apply
            self.remove()

    def remove(self) -> None:
        if self._loop is not None:
            for sig in self._installed:
                self._loop.remove_signal_handler(sig)
        self._loop, self._installed = None, []

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        first = self.signum is None
        self.signum = signum
        if first:
            print(
                f"run_live.py: {name}: ending the stream with the window in progress (again: stop now)",
                file=sys.stderr,
                flush=True,
            )
            end_sources(self._sources)
            return
        print(f"run_live.py: {name}: stopping now", file=sys.stderr, flush=True)
        self.remove()
        if self._task is not None:
            self._task.cancel()


def server_shutdown_line(summary: dict[str, Any] | None, n: int, last_seq: int | None) -> str | None:
    """The one line for a stream the server ended because it is shutting down (a deploy); None when
    the summary says something else. Every event up to the server's final one was received."""
    from engine.serve.protocol import SERVER_SHUTDOWN

    if not summary or summary.get("ended") != SERVER_SHUTDOWN:
        return None
    last = f" (last seq {last_seq})" if last_seq is not None else ""
    return f"run_live.py: {SERVER_SHUTDOWN}: stream ended after {n} events{last}"


def banner(text: str, tty: bool) -> None:
    if tty:
        from rich.console import Console
        from rich.panel import Panel

        Console(stderr=True).print(Panel(text, title="WARNING", style="bold red"))
    else:
        line = "!" * 100
        print(f"{line}\n{text}\n{line}", file=sys.stderr, flush=True)


async def amain_remote(args: argparse.Namespace, shutdown: Shutdown) -> int:  # noqa: C901 - each way a server stream can end
    """Stream the sources to a server and show its events like the in-process engine's."""
    from websockets.exceptions import WebSocketException

    from engine.serve.config import TOKEN_ENV
    from engine.sinks.runner import SinkRunner
    from engine.tools.client import ServerError, StreamClient, feed_sources

    sources = build_sources(args)
    bad = check_files(sources)
    if bad:
        return fail(bad)
    sinks = build_sinks(args)
    bad = check_sinks(sinks)
    if bad:
        return fail(bad)
    errors: list[str] = []
    failure: list[str] = []  # a fatal sink failed (the JSONL file cannot be written): the stream stops
    runner = SinkRunner(sinks, errors.append, 30.0, on_fatal=failure.append)
    await runner.start(
        {"server": args.server, "stream": args.stream_id, "sources": [s.name for s in sources]}
    )
    n, last_seq = 0, None
    token = args.token or os.environ.get(TOKEN_ENV) or None
    modalities = [m for m in ("audio", "video") if any(m in s.modalities for s in sources)]
    client = StreamClient(args.server, stream=args.stream_id, modalities=modalities, token=token)
    feeder: asyncio.Task | None = None
    drained: str | None = None  # the one line for a server that ended the stream to shut down
    shutdown.install(sources)
    try:
        await client.connect()
        feeder = asyncio.create_task(feed_sources(client, sources), name="client:feed")
        async with contextlib.aclosing(client.events()) as events:
            async for ev in events:
                runner.put(ev)
                n, last_seq = n + 1, ev.seq
                if failure:
                    break
        drained = server_shutdown_line(client.summary, n, last_seq)
        if not failure and drained is None:
            await feeder  # what the sources or the socket raised while sending surfaces here
    except ServerError as e:
        return fail(e.message if n == 0 else f"after {n} events: {e.message}")
    except (OSError, TimeoutError, WebSocketException) as e:
        return fail(f"cannot stream to {args.server}: {type(e).__name__}: {e}")
    finally:
        if feeder is not None:  # the server may end the stream while the sources still play
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
        await client.close()
        await runner.close()
        shutdown.remove()
    if failure:
        return fail(f"stream stopped after {n} events: {failure[0]}", code=1)
    if drained is not None:
        print(drained, file=sys.stderr)
        return 0
    written = f", written to {args.jsonl}" if args.jsonl else ""
    print(f"{n} events from {args.server}{written}", file=sys.stderr)
    return 0 if n > 0 else 1


def fail(msg: str, code: int = 2) -> int:
    print(f"run_live.py: error: {msg}", file=sys.stderr)
    return code
