"""The real chain, no hand-made checkpoint: extract real clips -> train -> the engine runs that checkpoint.

Extraction uses the engine's own offline extractors on the bundled CREMA-D clips (``files`` corpus), the
trainer writes the checkpoint (a tiny CM-ARR, a few steps), and both ``run_live.py`` and
``engine.evaluate`` load it: every event must say ``"trained": true`` and carry the checkpoint's id.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from models.checkpoint import load_checkpoint
from models.fusion_meta import FusionMeta
from tests.conftest import TRAIN_CONFIG
from tests.encoders.media import clip


def test_trainer_checkpoint_carries_what_the_engine_needs(trained_checkpoint: Path) -> None:
    ck = load_checkpoint(trained_checkpoint)
    meta = FusionMeta.from_extra(ck.extra)
    assert meta.model_id == "chain-test" and ck.identity.startswith("chain-test:")
    assert meta.class_names == ("ang", "hap", "neu", "sad")
    assert meta.extractor_profile["name"] == "offline" and "identity" in meta.extractor_profile
    assert meta.dims == {"text": 384, "audio": 384, "video": 135}
    assert meta.temperature > 0 and ck.extra["calibration"]["fitted_on"]
    assert "CC BY-NC-SA" in meta.licence  # the shipped config's licence line travels with the weights
    assert TRAIN_CONFIG.is_file()


def test_run_live_uses_the_trained_checkpoint(trained_checkpoint: Path, tmp_path: Path) -> None:
    import run_live

    out = tmp_path / "events.jsonl"
    rc = run_live.main(
        [
            "--video",
            str(clip("ANG")),
            "--fast",
            "--no-display",
            "--jsonl",
            str(out),
            "--checkpoint",
            str(trained_checkpoint),
            "--set",
            "backend.name=torch",
        ]
    )
    assert rc == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    ident = load_checkpoint(trained_checkpoint).identity
    assert len(events) >= 2 and [e["seq"] for e in events] == list(range(len(events)))
    assert all(e["trained"] is True and e["model"] == ident for e in events)
    fused = [e for e in events if e["probs"]]
    assert fused and all(abs(sum(e["probs"].values()) - 1.0) < 1e-4 for e in fused)


def test_a_cider_checkpoint_goes_through_the_same_chain(
    trained_cider_checkpoint: Path, tmp_path: Path
) -> None:
    """CIDer trained by the same trainer on the same store: self-describing, calibrated, and run live."""
    import run_live

    ck = load_checkpoint(trained_cider_checkpoint)
    meta = FusionMeta.from_extra(ck.extra)
    assert ck.model_type == "cider" and ck.identity.startswith("cider-chain-test:")
    assert meta.dims == {"text": 384, "audio": 384, "video": 135} and meta.temperature > 0
    assert ck.extra["train_config"]["model"]["mssd"]["enabled"] is True
    out = tmp_path / "events.jsonl"
    argv = ["--video", str(clip("ANG")), "--fast", "--no-display", "--jsonl", str(out)]
    assert (
        run_live.main([*argv, "--checkpoint", str(trained_cider_checkpoint), "--set", "backend.name=torch"])
        == 0
    )
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(events) >= 2 and all(e["trained"] is True and e["model"] == ck.identity for e in events)
    fused = [e for e in events if e["probs"]]
    assert fused and all(abs(sum(e["probs"].values()) - 1.0) < 1e-4 for e in fused)
    assert any(e["condition"] == "tav" for e in fused)  # all three modalities fused through CIDer


def test_engine_evaluate_reports_the_trained_checkpoint(trained_checkpoint: Path, tmp_path: Path) -> None:
    from engine.tools.clip_evaluation import main

    root = tmp_path / "clips"
    root.mkdir()
    for lab in ("ANG", "SAD"):
        shutil.copy(clip(lab), root / clip(lab).name)
    (root / "labels.csv").write_text("name,label\n1001_DFA_ANG_XX,anger\n1001_DFA_SAD_XX,sadness\n")
    out = tmp_path / "eval.json"
    rc = main(
        [
            "--root",
            str(root),
            "--json",
            str(out),
            "--fast",
            "--checkpoint",
            str(trained_checkpoint),
            "--set",
            "backend.name=torch",
        ]
    )
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["trained"] is True and rep["model"] == load_checkpoint(trained_checkpoint).identity
    assert rep["overall"]["n"] == 2 and {c["condition"] for c in rep["clips"]} == {"tav"}


@pytest.mark.parametrize("what", ["profile", "meta"])
def test_engine_refuses_a_checkpoint_it_cannot_serve(
    trained_checkpoint: Path, tmp_path: Path, what: str
) -> None:
    """A trainer-written checkpoint, then altered: features from other extractors, or no metadata."""
    from engine.config import EngineConfig
    from engine.stages.fusion import ProfileMismatchError, load_fusion_model
    from models.checkpoint import save_checkpoint
    from models.encoders.profile import build_extractors
    from models.fusion_meta import CheckpointMetaError

    ck = load_checkpoint(trained_checkpoint)
    extra = json.loads(json.dumps(ck.extra))
    if what == "profile":
        extra["extractor_profile"]["identity"]["face"]["fps"] = 30.0
        err, match = ProfileMismatchError, "face.fps: recorded 30.0, current 10.0"
    else:
        extra.pop("fusion_meta_version")
        err, match = CheckpointMetaError, "not written by this project's trainer"
    path = tmp_path / f"{what}.safetensors"
    save_checkpoint(path, ck.model, extra)
    ex = build_extractors("offline")
    with pytest.raises(err, match=match):
        load_fusion_model(EngineConfig(checkpoint=str(path)), ex.describe(), ex.dims)
