"""Every benchmark runs both ways, ``python -m benchmarks.X`` and ``python benchmarks/X.py``, from any
working directory (the package is installed with the project)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAIN = 'if __name__ == "__main__"'
SCRIPTS = sorted(p for p in (REPO / "benchmarks").glob("*.py") if MAIN in p.read_text())


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_benchmark_runs_as_a_script(script: Path, tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage:" in r.stdout
