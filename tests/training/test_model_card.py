"""The model card is rendered from a real training run's summary and checkpoint (no hand-typed figures)."""

from __future__ import annotations

import json
from pathlib import Path

from models.checkpoint import load_checkpoint
from models.fusion_meta import FusionMeta
from training.recipe.card import render_card


def test_card_reports_the_run_it_was_rendered_from(trained_checkpoint: Path) -> None:
    summary = json.loads((trained_checkpoint.parent / "summary.json").read_text())
    timings = {"extracted_utterances": 0, "trainings_s": 600.0, "train_final_s": 600.0, "cv_s": 0.0}
    card = render_card({"final": summary, "timings": timings}, trained_checkpoint, "shipped.safetensors")
    ck = load_checkpoint(trained_checkpoint)
    assert card.startswith("# ") and "`shipped.safetensors`" in card and ck.identity in card
    assert "Not run (`--folds 0`)." in card  # no cross-validation in this report: said, not invented
    assert "an existing store was reused" in card and "the trainings took 10 min" in card
    assert summary["test_report"] is None and "No test split in this run." in card  # the clips: no test split
    # A validation report has the test report's format: every entry appears with its own figures.
    with_test = dict(summary, test_report=summary["val_report"])
    card = render_card({"final": with_test, "timings": timings}, trained_checkpoint)
    entries = summary["val_report"]["entries"]
    assert entries and f"`{trained_checkpoint.name}`" in card
    for key, e in entries.items():
        assert f"| {key} | {e['n']} | {100 * e['war']:.1f} | {100 * e['uar']:.1f} |" in card
    assert f"Temperature {FusionMeta.from_extra(ck.extra).temperature:.3f}" in card
