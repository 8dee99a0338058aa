"""Both fusion families through the live engine: --model picks the shipped CM-ARR or CIDer, and a model
YAML's model_type builds the untrained one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import MODELS, EngineConfig, build_engine_config, resolve_path
from tests.engine.media import CREMAD

ANG = CREMAD / "1001_DFA_ANG_XX.flv"


def test_every_shipped_family_has_its_files_and_licence() -> None:
    for name, (ckpt, arch) in MODELS.items():
        path = resolve_path(ckpt)
        assert path.is_file() and resolve_path(arch).is_file(), name
        card = path.with_suffix(".md").read_text()
        assert "CC BY-NC-SA 4.0" in card and "non-commercial" in card


def test_model_flag_sets_checkpoint_and_architecture() -> None:
    cfg = build_engine_config(None, [], model="cider")
    assert cfg.checkpoint == MODELS["cider"][0] and cfg.model_config == MODELS["cider"][1]
    mine = build_engine_config(None, [], model="cider", checkpoint="none")
    assert mine.checkpoint is None and mine.model_config == MODELS["cider"][1]  # --checkpoint wins
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        build_engine_config(None, [], model="nope")


def test_untrained_family_comes_from_the_model_yaml(tmp_path: Path) -> None:
    from engine.stages.fusion import load_fusion_model
    from models.cider import CIDer
    from models.cmarr import CMARR

    dims = {"text": 384, "audio": 384, "video": 135}
    cider = load_fusion_model(EngineConfig(checkpoint=None, model_config=MODELS["cider"][1]), {}, dims)
    cmarr = load_fusion_model(EngineConfig(checkpoint=None), {}, dims)
    assert isinstance(cider.model, CIDer) and isinstance(cmarr.model, CMARR)
    assert not cider.trained and cider.identity == "untrained" and cider.cache_key != cmarr.cache_key
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_type: transformer\n")
    known = r"model_type must be one of \['cider', 'cmarr'\], got 'transformer'"
    with pytest.raises(ValueError, match=known):
        load_fusion_model(EngineConfig(checkpoint=None, model_config=str(bad)), {}, dims)


@pytest.mark.parametrize("checkpoint", [None, "none"])
def test_run_live_with_cider(tmp_path: Path, checkpoint: str | None) -> None:
    """The shipped CIDer (ONNX Runtime, the default backend) and an untrained CIDer read the demo clip."""
    import run_live
    from models.checkpoint import load_checkpoint

    out = tmp_path / "events.jsonl"
    argv = ["--video", str(ANG), "--fast", "--no-display", "--jsonl", str(out), "--model", "cider"]
    if checkpoint:
        argv += ["--checkpoint", checkpoint, "--set", "backend.name=torch"]
    assert run_live.main(argv) == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(events) >= 2 and [e["seq"] for e in events] == list(range(len(events)))
    fused = [e for e in events if e["probs"]]
    assert fused and all(abs(sum(e["probs"].values()) - 1.0) < 1e-4 for e in fused)
    if checkpoint:
        assert all(e["model"] == "untrained" and e["trained"] is False for e in events)
    else:
        ident = load_checkpoint(resolve_path(MODELS["cider"][0])).identity
        assert all(e["model"] == ident and e["trained"] is True for e in events)
        assert fused[-1]["label"] in ("ang", "hap", "neu", "sad")
