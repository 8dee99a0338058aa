"""Load test of ``engine.serve``: N concurrent clients over loopback replay real clips at real-time pace.

    python -m benchmarks.serve_load --media tests/data/streams --streams 1,2,4,8 --seconds 60 \
        --json out/serve_load.json [--modalities audio,av] [--beyond]

The server is started as ``python -m engine.serve`` on 127.0.0.1 (a free port) with admission limits
lifted, so each run measures the load itself; clients start 0.25 s apart. For each modality set and N:

    {"streams", "modalities", "admitted", "rejected", "events", "lost", "e2e_ms": {"p50", "p95"},
     "delivery_ms": {"p50", "p95"}, "cpu_percent", "rss_mb", "asr_skipped"}

``lost`` counts gaps in an admitted stream's ``seq`` (and streams that ended without their final event);
``e2e_ms`` is each event's own end-to-end latency (media arrival at the server to emission);
``delivery_ms`` is emission to receipt by the client; ``cpu_percent`` is the server's CPU over the run
(100 = one core); ``rss_mb`` its peak resident memory (a fresh server per modality set).
``capacity`` is the largest audio-only N with e2e p95 <= 1 s and nothing lost, ``capacity_av`` the same
for audio+video, each with its target in ``targets`` (>= 8 and >= 3 on 2 cores); ``cores_per_stream``
is a run's server CPU split evenly over its streams;
``memory_per_extra_stream_mb`` is (peak RSS at N - at 1) / (N - 1).
``--beyond`` then restarts the server with ``max_streams = capacity`` and its default admission, opens
capacity + 2 streams, and reports how fast the extra ones were refused, with what reason, and the
admitted streams' e2e p95. Bounded: at most 16 streams, 600 s per run, 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.report import emit

ROOT = Path(__file__).resolve().parents[1]
MEDIA_EXT = {".flac", ".wav", ".mp4", ".flv", ".mkv", ".webm", ".mov", ".ogg", ".mp3"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def media_files(path: Path) -> list[Path]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in MEDIA_EXT) if path.is_dir() else [path]
    if not files:
        raise SystemExit(f"serve_load: no media files in {path}")
    return files


def has_video(path: Path) -> bool:
    import av

    with av.open(str(path)) as c:
        return bool(c.streams.video)


class Server:
    """``python -m engine.serve`` as a child process; its CPU time and peak RSS read from /proc."""

    def __init__(self, args: list[str]) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/v1/stream"
        cmd = [
            sys.executable,
            "-m",
            "engine.serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *args,
        ]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 300:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise SystemExit("server not ready within 300 s")

    def cpu_s(self) -> float:
        parts = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def one_client(url: str, path: Path, mods: list[str], seconds: float, name: str, delay: float) -> dict:
    from engine.tools.client import ServerError, stream_file

    await asyncio.sleep(delay)
    seqs: list[int] = []
    e2e: list[float] = []
    delivery: list[float] = []
    skipped = 0
    final = False
    t0 = time.monotonic()
    try:
        async for ev in stream_file(
            url, path, audio="audio" in mods, video="video" in mods, max_seconds=seconds, stream=name
        ):
            delivery.append((time.time() - ev.wall_time) * 1000.0)
            seqs.append(ev.seq)
            e2e.append(ev.e2e_latency_ms)
            skipped += ev.asr.get("state") == "skipped"
            final = final or ev.final
    except ServerError as e:
        return {
            "admitted": bool(seqs),
            "refused": not seqs,
            "code": e.code,
            "reason": e.message,
            "after_s": round(time.monotonic() - t0, 3),
            "seqs": seqs,
            "e2e": e2e,
            "delivery": delivery,
            "final": final,
            "skipped": skipped,
        }
    return {
        "admitted": True,
        "refused": False,
        "seqs": seqs,
        "e2e": e2e,
        "delivery": delivery,
        "final": final,
        "skipped": skipped,
    }


def lost_of(seqs: list[int], final: bool) -> int:
    if not seqs:
        return 0
    gaps = (max(seqs) + 1) - len(set(seqs))
    return gaps + (0 if final else 1)


def pct(x: list[float], q: float) -> float | None:
    return round(float(np.percentile(x, q)), 1) if x else None


async def load_run(
    server: Server, files: list[Path], mods: list[str], n: int, seconds: float
) -> dict[str, Any]:
    cpu0, t0 = server.cpu_s(), time.monotonic()
    peak = [server.rss_mb()]

    async def sample() -> None:
        while True:
            peak.append(server.rss_mb())
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    clients = [
        one_client(
            server.url, files[i % len(files)], mods, seconds, f"load-{'+'.join(mods)}-{n}-{i}", 0.25 * i
        )
        for i in range(n)
    ]
    res = await asyncio.gather(*clients)
    sampler.cancel()
    wall = time.monotonic() - t0
    admitted = [r for r in res if not r["refused"]]
    e2e = [x for r in admitted for x in r["e2e"]]
    delivery = [x for r in admitted for x in r["delivery"]]
    return {
        "streams": n,
        "modalities": "+".join(mods),
        "admitted": len(admitted),
        "rejected": len(res) - len(admitted),
        "events": sum(len(r["seqs"]) for r in admitted),
        "lost": sum(lost_of(r["seqs"], r["final"]) for r in admitted),
        "e2e_ms": {"p50": pct(e2e, 50), "p95": pct(e2e, 95)},
        "delivery_ms": {"p50": pct(delivery, 50), "p95": pct(delivery, 95)},
        "asr_skipped": sum(r["skipped"] for r in admitted),
        "cpu_percent": round(100.0 * (server.cpu_s() - cpu0) / wall, 1),
        "rss_mb": round(max(peak), 1),
        "errors": [r.get("reason") for r in res if r.get("reason")],
    }


async def beyond_run(files: list[Path], capacity: int, seconds: float) -> dict[str, Any]:
    server = Server(["--max-streams", str(capacity)])
    try:
        n = capacity + 2
        clients = [
            one_client(server.url, files[i % len(files)], ["audio"], seconds, f"beyond-{i}", 1.0 * i)
            for i in range(n)
        ]
        res = await asyncio.gather(*clients)
    finally:
        server.stop()
    admitted = [r for r in res if not r["refused"]]
    refused = [r for r in res if r["refused"]]
    e2e = [x for r in admitted for x in r["e2e"]]
    return {
        "max_streams": capacity,
        "streams": n,
        "admitted": len(admitted),
        "rejected": len(refused),
        "refusals": [{"code": r["code"], "reason": r["reason"], "after_s": r["after_s"]} for r in refused],
        "lost": sum(lost_of(r["seqs"], r["final"]) for r in admitted),
        "admitted_e2e_ms": {"p50": pct(e2e, 50), "p95": pct(e2e, 95)},
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    files = media_files(Path(args.media))
    video_files = [f for f in files if has_video(f)]
    counts = sorted({int(x) for x in args.streams.split(",")})
    if not counts or min(counts) < 1 or max(counts) > 16:
        raise SystemExit("--streams: between 1 and 16 streams per run")
    if not 0 < args.seconds <= 600:
        raise SystemExit("--seconds: in (0, 600]")
    mod_sets = {"audio": ["audio"], "av": ["audio", "video"]}
    runs = []
    idle_rss = {}
    for key in args.modalities.split(","):
        pool = video_files if key == "av" else files
        if not pool:
            print(f"no file with video for {key}; skipped", file=sys.stderr)
            continue
        # A fresh server per modality set: its peak RSS then belongs to these runs alone.
        unlimited = ["--max-streams", str(max(counts)), "--set", "max_cpu=1.0", "--set", "e2e_budget_ms=1e9",
                     "--set", "forecast_cpu=false"]  # fmt: skip
        server = Server(unlimited)
        idle_rss["+".join(mod_sets[key])] = round(server.rss_mb(), 1)
        try:
            for n in counts:
                r = await load_run(server, pool, mod_sets[key], n, args.seconds)
                print(
                    f"{r['modalities']} x{n}: e2e p95 {r['e2e_ms']['p95']} ms, lost {r['lost']}, "
                    f"cpu {r['cpu_percent']}%, rss {r['rss_mb']} MB",
                    file=sys.stderr,
                )
                runs.append(r)
        finally:
            server.stop()

    def fits(r: dict[str, Any]) -> bool:
        return r["lost"] == 0 and r["rejected"] == 0 and (r["e2e_ms"]["p95"] or 1e9) <= 1000.0

    capacity = max((r["streams"] for r in runs if r["modalities"] == "audio" and fits(r)), default=0)
    capacity_av = max((r["streams"] for r in runs if r["modalities"] == "audio+video" and fits(r)), default=0)
    for r in runs:  # cores each stream took: the server's CPU over the run, split evenly
        r["cores_per_stream"] = (
            round(r["cpu_percent"] / 100.0 / r["streams"], 3) if r.get("cpu_percent") else None
        )
    per_stream = {}
    for key in {r["modalities"] for r in runs}:
        rs = sorted((r for r in runs if r["modalities"] == key), key=lambda r: r["streams"])
        if len(rs) > 1:
            one, top = rs[0], rs[-1]
            per_stream[key] = round((top["rss_mb"] - one["rss_mb"]) / (top["streams"] - one["streams"]), 1)
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "media": [str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else f.name for f in files],
        "seconds": args.seconds,
        "idle_rss_mb": idle_rss,
        "runs": runs,
        "capacity": capacity,
        "capacity_av": capacity_av,
        "targets": [
            {
                "what": "audio-only streams, e2e p95 <= 1 s, 0 lost",
                "value": capacity,
                "target": ">= 8",
                "met": capacity >= 8,
            },
            {
                "what": "audio+video streams, e2e p95 <= 1 s, 0 lost",
                "value": capacity_av,
                "target": ">= 3",
                "met": capacity_av >= 3,
            },
        ],
        "memory_per_extra_stream_mb": per_stream,
    }
    if args.beyond and capacity:
        report["beyond_capacity"] = await beyond_run(files, capacity, min(args.seconds, 30.0))
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--media", default=str(ROOT / "tests" / "data" / "streams"), help="a media file or folder"
    )
    ap.add_argument("--streams", default="1,2,4,8", help="concurrent streams per run, comma-separated")
    ap.add_argument("--seconds", type=float, default=60.0, help="media seconds per stream")
    ap.add_argument("--modalities", default="audio,av", help="audio, av, or both")
    ap.add_argument("--beyond", action="store_true", help="also test refusal beyond the measured capacity")
    ap.add_argument("--json", type=Path, help="write the report here too")
    args = ap.parse_args()
    emit(asyncio.run(main_async(args)), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
