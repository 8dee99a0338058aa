"""What a first run costs: time from ``run_live.py --demo`` to its first event, with and without a cache.

    python -m benchmarks.first_run [--rounds 3] [--json out/first_run.json]

Each round starts ``run_live.py --demo`` (the bundled clip at real-time pace) three times in fresh
processes, each with its own empty cache folder (``XDG_CACHE_HOME``), and times the first event line:

* ``cold``: nothing cached: the fusion graph is exported on the way (what a first run costs when nothing
  prepared it);
* ``warm``: the same folder again: the graph is read from the cache (a second run);
* ``prepared``: a fresh folder that ``python -m engine.prepare`` filled first (what ``make setup`` does),
  then the demo.

Also, in the same run, the shipped model's export on its own through each exporter (``auto``: the
checked TorchScript trace the engine uses; ``dynamo``: ``torch.export``). Prints JSON with medians and
the ratios cold/warm and prepared/warm; the target is cold/warm <= 1.2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.report import emit

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.2


def first_event_s(cache: Path, out: Path) -> float:
    """Seconds from starting the demo to its first event line (plain output: one line per event)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    cmd = [sys.executable, str(REPO / "run_live.py"), "--demo", "--plain", "--jsonl", str(out), "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    first = None
    assert proc.stdout is not None
    for line in proc.stdout:
        if first is None and line.startswith("#"):
            first = time.perf_counter() - t0
    if proc.wait() != 0 or first is None:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}) or printed no event")
    return first


def prepare(cache: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    subprocess.run([sys.executable, "-m", "engine.prepare"], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def export_seconds(exporter: str, folder: Path) -> float:
    from engine.config import SHIPPED_CHECKPOINT, resolve_path
    from models.checkpoint import load_checkpoint
    from models.export import export_onnx

    model = load_checkpoint(resolve_path(SHIPPED_CHECKPOINT)).model
    t0 = time.perf_counter()
    export_onnx(model, folder / f"{exporter}.onnx", exporter=exporter)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    runs: dict[str, list[float]] = {"cold": [], "warm": [], "prepared": []}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        out = tmp / "events.jsonl"
        for r in range(args.rounds):
            cache = tmp / f"cache{r}"
            runs["cold"].append(first_event_s(cache, out))
            runs["warm"].append(first_event_s(cache, out))
            ready = tmp / f"prepared{r}"
            prepare(ready)
            runs["prepared"].append(first_event_s(ready, out))
        exports = {e: export_seconds(e, tmp) for e in ("auto", "dynamo")}
    med = {k: statistics.median(v) for k, v in runs.items()}
    ratio = med["cold"] / med["warm"]
    report: dict[str, Any] = {
        "benchmark": "first_run",
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "first_event_s": {k: [round(x, 2) for x in v] for k, v in runs.items()},
        "median_s": {k: round(v, 2) for k, v in med.items()},
        "ratio_cold_to_warm": round(ratio, 3),
        "ratio_prepared_to_warm": round(med["prepared"] / med["warm"], 3),
        "export_s": {k: round(v, 2) for k, v in exports.items()},
        "export_ratio_dynamo_to_auto": round(exports["dynamo"] / exports["auto"], 1),
        "target": f"cold/warm <= {TARGET_RATIO}",
        "met": ratio <= TARGET_RATIO,
    }
    emit(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
