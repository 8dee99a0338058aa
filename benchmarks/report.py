"""Print a benchmark's JSON report and, when asked, write the same text to a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(report: dict[str, Any], path: Path | None) -> None:
    out = json.dumps(report, indent=1)
    print(out)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(out + "\n")
