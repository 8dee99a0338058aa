"""The report of an evaluation run: its JSON (per clip, scores, --compare table) and its summary text."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from engine.core.shared import SharedModels
from engine.tools.clip_scores import ClipResult, summarise
from engine.tools.labelled_clips import Listing

CLIP_RULE = (
    "pred = argmax of the mean of the clip's event probs over the events that have probs; "
    "no such event -> pred null, counted as wrong"
)


def build_report(
    results: Sequence[ClipResult],
    listing: Listing,
    models: SharedModels,
    overrides: Sequence[str],
    config_file: str | None,
) -> dict[str, Any]:
    fm = models.fusion
    return {
        "model": fm.identity,
        "trained": bool(fm.trained),
        "class_names": list(fm.class_names),
        "rule": CLIP_RULE,
        "config": list(overrides),
        "config_file": config_file,
        "clips": [asdict(r) for r in results],
        **summarise(results, fm.class_names),
        "skipped": listing.skipped,
        "labels_without_media": listing.unmatched_labels,
    }


def finish_report(reports: Sequence[dict[str, Any]], tracks: str) -> dict[str, Any]:
    """The first model's report with the tracks replayed and, with --compare, the comparison of all."""
    report = reports[0]
    report["tracks"] = tracks
    if len(reports) > 1:
        report["comparison"] = comparison(reports)
    return report


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def summary_text(report: dict[str, Any]) -> str:
    o = report["overall"]
    failed = sum(1 for c in report["clips"] if c["error"])
    lines = [
        f"model {report['model']} (trained: {report['trained']}); {len(report['clips'])} clips, "
        f"{failed} unreadable, {len(report['skipped'])} without a label",
        f"overall: WAR {_pct(o['war'])}  UAR {_pct(o['uar'])}  n={o['n']}",
    ]
    for k, s in report["by_condition"].items():
        lines.append(f"  {k or '(none)':>6}: WAR {_pct(s['war'])}  UAR {_pct(s['uar'])}  n={s['n']}")
    return "\n".join(lines)


def json_safe(v: Any) -> Any:
    """``v`` with string keys and non-finite floats as None, so that it is strict JSON."""
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def comparison(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per model: overall and per-condition scores on the same clips, and the per-clip predictions."""
    return {
        "models": [
            {"model": r["model"], "overall": r["overall"], "by_condition": r["by_condition"]} for r in reports
        ],
        "clips": [
            {"name": c["name"], "label": c["label"], "pred": [r["clips"][i]["pred"] for r in reports]}
            for i, c in enumerate(reports[0]["clips"])
        ],
    }


def comparison_text(comp: dict[str, Any]) -> str:
    lines = ["same clips, same extractors:"]
    for m in comp["models"]:
        o = m["overall"]
        lines.append(f"  {m['model']}: WAR {_pct(o['war'])}  UAR {_pct(o['uar'])}  n={o['n']}")
    return "\n".join(lines)
