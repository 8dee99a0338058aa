"""python -m engine.prepare builds the fusion backend's cache a first run would build, and the models
load in one order: the fusion checkpoint before any extractor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import prepare
from engine.config import SHIPPED_CHECKPOINT, build_engine_config, resolve_path
from engine.core import loading
from models.checkpoint import CheckpointFileError

SHIPPED = resolve_path(SHIPPED_CHECKPOINT)


def test_prepare_exports_the_shipped_model_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cache = tmp_path / "cache"
    assert prepare.main(["--set", f"backend.cache_dir={cache}"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["model"].startswith("cmarr-offline-v3:") and first["backend"]["backend"] == "onnxruntime"
    graph = cache / first["backend"]["onnx"]
    assert graph.is_file() and graph.stat().st_size > 1_000_000
    assert [p.name for p in cache.iterdir()] == [graph.name]  # no temporary file left behind
    stamp = graph.stat().st_mtime_ns

    assert prepare.main(["--set", f"backend.cache_dir={cache}"]) == 0  # a second run reuses it
    second = json.loads(capsys.readouterr().out)
    assert second["backend"]["onnx"] == graph.name and graph.stat().st_mtime_ns == stamp

    # the engine's own loading finds the same graph: nothing is exported again
    cfg = build_engine_config(None, [f"backend.cache_dir={cache}"])
    backend = loading.build_backend(loading.load_fusion(cfg), cfg)
    try:
        assert backend.describe()["onnx"] == graph.name and graph.stat().st_mtime_ns == stamp
    finally:
        backend.close()


def test_prepare_fails_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert prepare.main(["--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m engine.prepare: error: checkpoint not found")
    assert prepare.main(["--set", "backend.name=bogus"]) == 2
    assert "backend name must be one of" in capsys.readouterr().err


def test_a_bad_checkpoint_fails_before_any_extractor_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_extractors(cfg: object) -> None:
        raise AssertionError("the extractors loaded before the checkpoint was read")

    monkeypatch.setattr(loading, "load_extractors", no_extractors)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    cfg = build_engine_config(None, [], checkpoint=str(bad))
    with pytest.raises(CheckpointFileError, match="not a readable .safetensors checkpoint"):
        loading.load_models(cfg)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_an_unreadable_checkpoint_is_one_line_in_every_command(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import run_live
    from engine.serve.__main__ import main as serve_main

    bad = tmp_path / "bad.safetensors"
    if damage == "garbage":
        bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    else:  # a download cut short: the real header, a tenth of the tensors
        bad.write_bytes(SHIPPED.read_bytes()[: SHIPPED.stat().st_size // 10])
    for main, prog in ((run_live.main, "run_live.py"), (serve_main, "engine.serve"),
                       (prepare.main, "python -m engine.prepare")):  # fmt: skip
        argv = ["--demo"] if main is run_live.main else []
        assert main([*argv, "--checkpoint", str(bad)]) == 2, prog
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"{prog}: error: {bad} is not a readable .safetensors checkpoint"), err
        assert "Traceback" not in "\n".join(err)
