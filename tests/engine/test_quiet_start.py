"""A first run prints one "loading models" line before the events, not the libraries' startup noise;
--verbose shows that noise, and real errors are never hidden."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_demo(*extra: str, tmp: Path) -> list[str]:
    cmd = [sys.executable, "run_live.py", "--demo", "--no-display", "--max-seconds", "1.5",
           "--jsonl", str(tmp / "e.jsonl"), "--overwrite", *extra]  # fmt: skip
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stderr.splitlines()


def test_the_demo_starts_quietly(tmp_path: Path) -> None:
    lines = run_demo(tmp=tmp_path)
    assert lines[0] == "loading models..." and lines[-1].endswith(f"written to {tmp_path / 'e.jsonl'}"), lines
    assert len(lines) == 2, lines


def test_verbose_shows_the_native_startup_lines(tmp_path: Path) -> None:
    lines = run_demo("--verbose", tmp=tmp_path)
    assert any(line.startswith("INFO: ") for line in lines), lines  # LiteRT's, from below Python


def test_real_native_errors_pass_the_filter() -> None:
    code = (
        "import os, sys\n"
        "from engine.quiet import quiet_start\n"
        "quiet_start()\n"
        "os.write(2, b'INFO: [environment.cc:36] Creating LiteRT environment\\n')\n"
        "os.write(2, b'E0000 00:00:1 runner.cc:1] a real native error\\n')\n"
        "print('a Python warning', file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "a real native error" in r.stderr and "a Python warning" in r.stderr
    assert "Creating LiteRT environment" not in r.stderr
