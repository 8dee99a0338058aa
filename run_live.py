#!/usr/bin/env python3
"""Real-time multimodal emotion recognition from a webcam + microphone, media files, or a demo clip.

Examples:
  python run_live.py --camera 0                     webcam 0 and the default microphone
  python run_live.py --mic 2                        audio only, input device 2
  python run_live.py --video clip.mp4               replay a file at real-time pace (its audio too)
  python run_live.py --video clip.mp4 --fast        replay as fast as the engine goes
  python run_live.py --audio call.wav --jsonl out/call.jsonl --no-display
  python run_live.py --demo                         replay a bundled CREMA-D clip (offline)
  python run_live.py --camera 0 --server ws://127.0.0.1:8765/v1/stream
                                                    the engine runs on a server (python -m engine.serve)

Events go to the terminal (a live view on a TTY, plain lines otherwise), to --jsonl as one JSON object
per window, and nowhere else. The fusion model is the shipped, calibrated CM-ARR
(models/assets/cmarr_offline_v3.safetensors, non-commercial licence: see its model card) unless
--model cider picks the shipped CIDer (models/assets/cider_offline_v1.safetensors, same licence) or
--checkpoint names another; --checkpoint none runs an UNTRAINED model, and the program says so.

--jsonl refuses a file that exists and is not empty unless --append or --overwrite says what to do with
it (--demo replaces its own file). SIGINT (Ctrl-C) or SIGTERM ends the stream cleanly: the window in
progress becomes the final event, the output is flushed and closed, and the exit status is 0. A second
signal stops at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's native INFO lines
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent
DEMO_CLIP = ROOT / "data" / "cremad" / "1001_DFA_ANG_XX.flv"
DEMO_JSONL = Path("out") / "demo_events.jsonl"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _source_options(ap)
    _output_options(ap)
    _server_options(ap)
    _engine_options(ap)
    args = ap.parse_args(argv)
    _check_args(ap, args)
    return args


def _source_options(ap: argparse.ArgumentParser) -> None:
    src = ap.add_argument_group("sources (at least one)")
    src.add_argument(
        "--camera",
        metavar="N",
        help="capture webcam N (OpenCV index or device path); adds the "
        "default microphone unless --mic or --no-mic says otherwise",
    )
    src.add_argument(
        "--mic",
        metavar="DEVICE",
        help="capture microphone DEVICE (sounddevice index or name; 'default' for the system default)",
    )
    src.add_argument("--no-mic", action="store_true", help="with --camera: video only")
    src.add_argument(
        "--video", metavar="PATH", help="replay a video file (with its audio track unless --audio is given)"
    )
    src.add_argument("--audio", metavar="PATH", help="replay an audio file (or the audio of any container)")
    src.add_argument(
        "--demo", action="store_true", help=f"replay {DEMO_CLIP.relative_to(ROOT)} and write {DEMO_JSONL}"
    )
    src.add_argument("--fast", action="store_true", help="replay files as fast as possible, not at real time")


def _output_options(ap: argparse.ArgumentParser) -> None:
    out = ap.add_argument_group("output")
    out.add_argument("--no-display", action="store_true", help="no terminal view of events")
    out.add_argument(
        "--verbose", action="store_true", help="show the libraries' informational lines at startup"
    )
    out.add_argument("--plain", action="store_true", help="plain text lines even on a terminal")
    out.add_argument("--jsonl", metavar="PATH", help="write every event as a JSON line to PATH")
    mode = out.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_true", help="--jsonl: add to PATH if it has events already")
    mode.add_argument("--overwrite", action="store_true", help="--jsonl: replace PATH if it exists")


def _server_options(ap: argparse.ArgumentParser) -> None:
    remote = ap.add_argument_group("server (instead of the in-process engine)")
    remote.add_argument(
        "--server", metavar="URL", help="stream to an engine.serve server, e.g. ws://127.0.0.1:8765/v1/stream"
    )
    remote.add_argument("--token", help="the server's bearer token (default: $EMOTION_SERVE_TOKEN)")
    remote.add_argument("--stream-id", default="run_live", help="the stream's name on the server")


def _engine_options(ap: argparse.ArgumentParser) -> None:
    eng = ap.add_argument_group("engine")
    eng.add_argument("--config", metavar="YAML", help="engine config (configs/engine/default.yaml if absent)")
    eng.add_argument(
        "--model",
        choices=("cmarr", "cider"),
        help="fusion model family: its shipped checkpoint and architecture (default: cmarr)",
    )
    eng.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="trained fusion checkpoint (.safetensors, CM-ARR or CIDer); default: the shipped model of "
        "--model; none: untrained",
    )
    eng.add_argument("--backend", choices=("onnxruntime", "torch", "tensorrt"), help="fusion backend")
    eng.add_argument("--device", help="fusion device: cpu (default) or cuda[:N]")
    eng.add_argument("--max-seconds", type=float, metavar="S", help="stop after S seconds of media")
    eng.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set window.hop_s=0.5 (repeatable)",
    )


def _check_args(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The demo's defaults, then what no option alone can check: a source given, --append/--overwrite
    with --jsonl, no in-process engine options with --server. A bad line exits 2 with one message."""
    if args.demo:
        args.video = args.video or str(DEMO_CLIP)
        if not args.jsonl:
            args.jsonl = str(DEMO_JSONL)
            args.overwrite = not args.append  # the demo's own output: each run replaces it
    if (args.append or args.overwrite) and not args.jsonl:
        ap.exit(2, "error: --append and --overwrite say how to write --jsonl PATH; give --jsonl\n")
    if not (args.camera is not None or args.mic is not None or args.video or args.audio):
        ap.print_help(sys.stderr)
        ap.exit(2, "\nerror: give a source: --camera N, --mic DEVICE, --video PATH, --audio PATH or --demo\n")
    if args.server:
        given = (
            ("--fast", args.fast),
            ("--config", args.config),
            ("--model", args.model),
            ("--checkpoint", args.checkpoint),
            ("--backend", args.backend),
            ("--device", args.device),
            ("--set", args.set),
        )
        local = [flag for flag, v in given if v]
        if local:
            ap.exit(
                2,
                f"error: {', '.join(local)} configure the in-process engine; with --server the server's "
                "configuration applies (and media is sent at real-time pace)\n",
            )


def build_config(args: argparse.Namespace):  # noqa: ANN201 - EngineConfig, imported lazily
    from engine.config import build_engine_config

    return build_engine_config(
        args.config,
        args.set,
        checkpoint=args.checkpoint,
        backend=args.backend,
        device=args.device,
        model=args.model,
    )


async def amain(args: argparse.Namespace, shutdown: Any = None) -> int:
    from engine.tools.live_command import (
        Shutdown,
        amain_remote,
        banner,
        build_sinks,
        build_sources,
        check_files,
        check_sinks,
        fail,
    )

    shutdown = shutdown or Shutdown()
    if args.server:
        return await amain_remote(args, shutdown)
    from engine import UNTRAINED_BANNER, Engine
    from engine.backends import BackendError, preflight
    from engine.core.memory import trim_every
    from engine.stages.fusion import ProfileMismatchError
    from models.checkpoint import CheckpointFileError
    from models.fusion_meta import CheckpointMetaError

    try:
        cfg = build_config(args)
    except (ValueError, FileNotFoundError) as e:
        return fail(f"bad configuration: {e}")
    from engine.stages.fusion import check_checkpoint

    sources = build_sources(args)
    try:
        check_checkpoint(cfg)
        preflight(cfg.backend.name, cfg.backend.device)
    except (FileNotFoundError, CheckpointFileError, BackendError) as e:
        return fail(str(e))
    bad = check_files(sources)  # a file asked for at start fails here, before any model loads
    if bad:
        return fail(bad)
    sinks = build_sinks(args)
    bad = check_sinks(sinks)  # so does an output file that must not be overwritten
    if bad:
        return fail(bad)
    eng = Engine(cfg, sources, sinks, keep_events=False, announce_untrained=False)
    tty = sys.stdout.isatty() and not args.plain
    print("loading models...", file=sys.stderr, flush=True)
    try:
        await eng.start()
    except (FileNotFoundError, CheckpointFileError, CheckpointMetaError, ProfileMismatchError,
            BackendError) as e:
        await eng.close()
        return fail(str(e).splitlines()[0] if isinstance(e, FileNotFoundError) else str(e))
    if not eng.fusion_model.trained:
        banner(UNTRAINED_BANNER, tty)
    trimmer = asyncio.create_task(trim_every(60.0))  # long streams: return freed heap to the OS
    shutdown.install(sources)
    try:
        await eng.wait()
    finally:
        trimmer.cancel()
        await eng.close()  # the sinks take what is queued, then flush and close
        shutdown.remove()
    n = eng.events_emitted
    if eng.failure:
        return fail(f"stream stopped after {n} events: {eng.failure}", code=1)
    print(
        f"{n} events"
        + (f", written to {args.jsonl}" if args.jsonl else "")
        + (f"; errors: {eng.errors}" if eng.errors else ""),
        file=sys.stderr,
    )
    return 0 if n > 0 else 1


def main(argv: list[str] | None = None, *, quiet: bool = False) -> int:
    """``quiet``: keep the native libraries' informational lines off the terminal (the command line
    does, unless --verbose; in-process callers keep their own stderr)."""
    args = parse_args(argv)
    if quiet and not args.verbose:
        from engine.quiet import quiet_start

        quiet_start()
    from engine.tools.live_command import Shutdown

    shutdown = Shutdown()
    try:
        return asyncio.run(amain(args, shutdown))
    except asyncio.CancelledError:  # a second SIGINT / SIGTERM
        return shutdown.exit_code
    except KeyboardInterrupt:  # Ctrl-C before the stream started
        return 130


if __name__ == "__main__":
    sys.exit(main(quiet=True))
