"""Every ``python -m`` command of the README runs from a fresh interpreter and prints its usage: the
top-level command modules of ``training/`` and ``engine/`` reach the code they name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMANDS = (
    "training.train",
    "training.extract",
    "training.evaluate",
    "training.cv",
    "training.reproduce",
    "training.speech_calibration",
    "training.train_denseface",
    "training.denseface_data",
    "engine.evaluate",
    "engine.calibrate",
    "engine.profile",
    "engine.prepare",
    "engine.serve",
)


@pytest.mark.parametrize("module", COMMANDS)
def test_command_prints_its_usage(module: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.lstrip().startswith("usage:"), r.stdout[:500]
    assert "--" in r.stdout  # it lists its options


def test_every_command_module_is_listed() -> None:
    found = {
        f"{p.parent.name}.{p.stem}"
        for pkg in ("training", "engine")
        for p in (REPO / pkg).glob("*.py")
        if 'if __name__ == "__main__"' in p.read_text()
    }
    found |= {"engine.serve"}  # a package: engine/serve/__main__.py
    assert found == set(COMMANDS)
