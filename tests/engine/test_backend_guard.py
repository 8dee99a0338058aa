"""Guards around the fusion backends, on the shipped model in onnxruntime: a hung backend times its
callers out and reports itself stuck (then recovers); cache files are keyed by what makes them (the
export code, the graph's bytes, the build code) and written atomically."""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

import models.export
from engine.backends import BackendTimeout, BatchingBackend, FusionBackend, create_backend
from engine.backends import cache as cachemod
from engine.backends import onnxruntime_backend as ortb
from engine.backends import tensorrt_backend as trtb
from engine.backends.base import FusionInputs, FusionResult
from engine.backends.graphs import converted_name, fp16_graph
from engine.config import SHIPPED_CHECKPOINT, resolve_path
from engine.core.shared import SharedModels
from engine.tools.backend_latency import window_inputs
from models.checkpoint import load_checkpoint
from models.modalities import CONDITIONS


@pytest.fixture(scope="module")
def shipped() -> Any:
    ck = load_checkpoint(resolve_path(SHIPPED_CHECKPOINT))
    c = ck.config
    return SimpleNamespace(
        model=ck.model.eval(),
        model_id=ck.sha256,
        dims={"text": c.text_dim, "audio": c.audio_dim, "video": c.video_dim},
    )


@pytest.fixture(scope="module")
def ort(shipped: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The shipped model's graph, exported once into this module's own cache folder."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    return create_backend("onnxruntime", shipped.model, shipped.model_id, cache_dir=str(cache), threads=1)


def window(shipped: Any, seed: int = 0) -> FusionInputs:
    return window_inputs(shipped.dims, 1, {"text": 6, "audio": 40, "video": 12}, seed, CONDITIONS["tav"])


class HangingBackend(FusionBackend):
    """A real backend behind a gate: while ``hang`` is set, a call blocks until ``release`` is set."""

    name = "hanging-onnxruntime"

    def __init__(self, inner: FusionBackend) -> None:
        super().__init__(inner.model_id)
        self.inner = inner
        self.hang = True
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls: list[int] = []  # rows per call that reached the real backend

    def infer(self, inputs: FusionInputs) -> FusionResult:
        if self.hang:
            self.entered.set()
            self.release.wait()
        self.calls.append(inputs.batch)
        return self.inner.infer(inputs)


def bounded(fn: Callable[[], Any], limit_s: float) -> tuple[Any, BaseException | None, float]:
    """Run ``fn`` on a thread; (result, exception, seconds). Fails the test instead of hanging."""
    out: dict[str, Any] = {}

    def run() -> None:
        t0 = time.perf_counter()
        try:
            out["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - returned to the test
            out["error"] = e
        out["s"] = time.perf_counter() - t0

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit_s)
    assert not t.is_alive(), f"the call was still blocked after {limit_s} s"
    return out.get("result"), out.get("error"), out["s"]


def wait_until(cond: Callable[[], bool], limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# --------------------------------------------------------------------------------------------------
# timeouts and health
# --------------------------------------------------------------------------------------------------
def test_hung_backend_times_out_reports_stuck_and_recovers(shipped: Any, ort: Any) -> None:
    hanging = HangingBackend(ort)
    shared = BatchingBackend(hanging, max_batch=4, max_wait_ms=1.0, timeout_s=0.5)
    models = SharedModels(extractors=None, fusion=None, backend=shared)  # health() reads the backend only
    try:
        assert shared.health() == (True, "") and shared.stalled_s() is None
        assert models.health() == {"ok": True, "reason": "", "stalled_s": None}

        _, err, took = bounded(lambda: shared.infer(window(shipped)), limit_s=10)
        assert isinstance(err, BackendTimeout) and isinstance(err, TimeoutError)
        assert 0.45 <= took < 3.0
        assert "hanging-onnxruntime fusion backend gave no result within 0.5 s" in str(err)
        assert hanging.entered.is_set() and hanging.calls == []  # the call is still blocked inside

        # Stuck: the call has run longer than timeout_s; /healthz would say so.
        wait_until(lambda: (shared.stalled_s() or 0.0) > 0.5)
        ok, reason = shared.health()
        assert not ok and "hanging-onnxruntime fusion backend is stuck" in reason
        assert "(timeout 0.5 s)" in reason
        h = models.health()
        assert h["ok"] is False and h["reason"].startswith("the hanging-onnxruntime") and h["stalled_s"] > 0.5

        # A window queued behind the stuck call gives up too, and is then never run.
        _, err2, took2 = bounded(lambda: shared.infer(window(shipped, seed=1)), limit_s=10)
        assert isinstance(err2, BackendTimeout) and took2 < 3.0 and "has run" in str(err2)
        assert shared.stats.timeouts == 2

        hanging.hang = False
        hanging.release.set()  # the hung call returns: healthy again
        wait_until(lambda: shared.stalled_s() is None)
        assert shared.health() == (True, "")
        assert models.health()["ok"] is True

        x = window(shipped, seed=2)
        got, err3, _ = bounded(lambda: shared.infer(x), limit_s=10)
        assert err3 is None
        np.testing.assert_allclose(got.probs, ort.infer(x).probs, atol=1e-6)
        assert hanging.calls == [1, 1]  # the hung window, then this one: the abandoned window was skipped
    finally:
        hanging.release.set()
        shared.stop()
    ok, reason = shared.health()
    assert not ok and "closed" in reason


def test_a_slow_call_within_the_timeout_is_served(shipped: Any, ort: Any) -> None:
    hanging = HangingBackend(ort)
    shared = BatchingBackend(hanging, max_batch=4, max_wait_ms=1.0, timeout_s=20.0)
    try:
        threading.Timer(0.3, hanging.release.set).start()
        got, err, took = bounded(lambda: shared.infer(window(shipped)), limit_s=20)
        assert err is None and got.probs.shape == (1, 4) and took >= 0.3
        assert shared.health() == (True, "") and shared.stats.timeouts == 0
        assert "timeout_s=20" in shared.describe()["batching"]
    finally:
        hanging.release.set()
        shared.stop()


def test_timeout_must_be_positive(ort: Any) -> None:
    with pytest.raises(ValueError, match="timeout_s must be > 0, got 0"):
        BatchingBackend(ort, timeout_s=0)
    assert ort.health() == (True, "")  # a plain backend cannot watch its calls: ok
    assert "timeout_s" in inspect.signature(SharedModels.load).parameters


# --------------------------------------------------------------------------------------------------
# cache keys
# --------------------------------------------------------------------------------------------------
def no_export(*a: object, **k: object) -> None:
    raise AssertionError("exported again although the graph is cached")


def test_second_load_reuses_the_exported_graph(
    shipped: Any, ort: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ort.onnx_path
    assert path.name == ortb.graph_name(shipped.model_id, cachemod.export_version(shipped.model))
    monkeypatch.setattr(models.export, "export_onnx", no_export)
    again = create_backend(
        "onnxruntime", shipped.model, shipped.model_id, cache_dir=str(path.parent), threads=1
    )
    assert again.onnx_path == path
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left


def test_export_code_change_exports_again(shipped: Any, ort: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_dir = ort.onnx_path.parent
    exported: list[Path] = []

    def fake_export(model: object, path: Path, **kw: object) -> Path:
        exported.append(Path(path))
        Path(path).write_bytes(ort.onnx_path.read_bytes())
        return Path(path)

    monkeypatch.setattr(models.export, "export_onnx", fake_export)
    monkeypatch.setattr(ortb, "export_version", lambda model: "edited0000000000")
    new = ortb.cached_graph(shipped.model, shipped.model_id, cache_dir)
    assert len(exported) == 1 and new != ort.onnx_path and new.name.endswith("-exportedited0000000000.onnx")
    assert ortb.cached_graph(shipped.model, shipped.model_id, cache_dir) == new and len(exported) == 1
    new.unlink()


def test_export_version_follows_the_export_and_model_source(
    shipped: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = shipped.model
    v = cachemod.export_version(model)
    assert v == cachemod.export_version(model) and len(v) == cachemod.DIGEST_CHARS
    files = {p.name for p in cachemod._model_source_files(model)}
    assert "modeling_cmarr.py" in files and "modeling_cider.py" not in files  # its own code, not others'

    edited = tmp_path / "export.py"  # models/export.py with one byte more
    edited.write_bytes(Path(models.export.__file__).read_bytes() + b"\n")
    monkeypatch.setattr(models.export, "__file__", str(edited))
    assert cachemod.export_version(model) != v
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "99.0")  # another exporter
    assert cachemod.export_version(model) != v


def test_converted_graph_and_engine_keys_follow_the_graph_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tmp_path / "fusion.onnx", tmp_path / "other" / "fusion.onnx"
    b.parent.mkdir()
    a.write_bytes(b"graph bytes")
    b.write_bytes(b"graph bytes, exported by newer code")
    assert converted_name(a, "fp16") == converted_name(a, "fp16")
    assert converted_name(a, "fp16") != converted_name(b, "fp16")  # same name, other bytes
    assert converted_name(a, "fp16", version="v1") != converted_name(a, "fp16", version="v2")
    calib = tmp_path / "calib.npz"
    calib.write_bytes(b"calibration")
    assert converted_name(a, "int8", calib) != converted_name(a, "int8", calib, method="percentile")
    with pytest.raises(ValueError, match="calibration_npz"):
        converted_name(a, "int8")

    gpu = SimpleNamespace(name="NVIDIA H200", major=9, minor=0)
    shapes = trtb.ProfileShapes()

    def engine(onnx: Path = a, **kw: Any) -> str:
        return trtb.engine_name(onnx, gpu, "10.9", "fp16", shapes, **kw)

    assert engine() == engine() and engine().startswith("fusion-fp16-")
    assert engine(b) != engine()  # the graph's own bytes key the engine
    assert engine(workspace_mb=2048) != engine()
    assert engine(build="v2") != engine(build="v1")
    monkeypatch.setattr(trtb, "build_version", lambda: "edited build code")
    assert engine() != engine(build=cachemod.code_digest(trtb.TensorRTBackend._build, trtb.network_flags))


def test_build_version_hashes_the_build_code_only() -> None:
    def build_a() -> int:
        return 1

    def build_b() -> int:
        return 2

    assert cachemod.code_digest(build_a) != cachemod.code_digest(build_b)
    assert trtb.build_version() == trtb.build_version()
    assert trtb.build_version() == cachemod.code_digest(trtb.TensorRTBackend._build, trtb.network_flags)


def test_fp16_graph_is_converted_once(
    shipped_trt_graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnxconverter_common import float16

    first = fp16_graph(shipped_trt_graph, tmp_path)
    assert first.name == converted_name(shipped_trt_graph, "fp16") and first.stat().st_size > 0

    def no_convert(*a: object, **k: object) -> None:
        raise AssertionError("converted again although the fp16 graph is cached")

    monkeypatch.setattr(float16, "convert_float_to_float16", no_convert)
    assert fp16_graph(shipped_trt_graph, tmp_path) == first
    assert [p.name for p in tmp_path.iterdir()] == [first.name]


# --------------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------------
def test_interrupted_export_leaves_no_partial_graph(
    shipped: Any, ort: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = ort.onnx_path.read_bytes()

    def export_then_fail(model: object, path: Path, **kw: object) -> None:
        Path(path).write_bytes(data[: len(data) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(models.export, "export_onnx", export_then_fail)
    with pytest.raises(OSError, match="No space left"):
        ortb.cached_graph(shipped.model, shipped.model_id, tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither a half graph at the final path nor a temporary file


def test_interrupted_fp16_conversion_leaves_no_partial_graph(
    shipped_trt_graph: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx

    def save_then_fail(model: object, f: str, *a: object, **k: object) -> None:
        Path(f).write_bytes(b"half a graph")
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx, "save", save_then_fail)
    with pytest.raises(KeyboardInterrupt):
        fp16_graph(shipped_trt_graph, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_tensorrt_engine_and_timing_cache_are_written_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, timing = tmp_path / "fusion-fp16-x.engine", tmp_path / "timing.cache"
    timing.write_bytes(b"old timing cache")

    def failing_fsync(fd: int) -> None:  # the disk fails once the engine's bytes are written
        raise OSError("I/O error")

    with monkeypatch.context() as m:
        m.setattr(cachemod.os, "fsync", failing_fsync)
        with pytest.raises(OSError, match="I/O error"):
            trtb.save_build(engine, b"engine" * 1000, timing, b"new timing cache")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timing.cache"]  # no engine, no temporary file

    real_replace = os.replace

    def replace_engine_only(src: str, dst: str | Path) -> None:
        if Path(dst).name == "timing.cache":
            raise OSError("interrupted")
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(cachemod.os, "replace", replace_engine_only)
        with pytest.raises(OSError, match="interrupted"):
            trtb.save_build(engine, b"engine" * 1000, timing, b"new timing cache")
    assert engine.read_bytes() == b"engine" * 1000
    assert timing.read_bytes() == b"old timing cache"  # the old cache, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [engine.name, "timing.cache"]

    trtb.save_build(engine, b"engine 2", timing, b"new timing cache")
    assert engine.read_bytes() == b"engine 2" and timing.read_bytes() == b"new timing cache"


def test_atomic_write_uses_a_unique_temporary_file_and_a_plain_mode(tmp_path: Path) -> None:
    target = tmp_path / "graph.onnx"
    seen: list[Path] = []

    def outer(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"outer")
        cachemod.atomic_write(target, inner)  # a second writer of the same file at the same time

    def inner(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"inner")

    cachemod.atomic_write(target, outer)
    assert seen[0] != seen[1] and all(p.parent == tmp_path for p in seen)
    assert target.read_bytes() == b"outer"  # each writer renames its own whole file; the last one wins
    assert [p.name for p in tmp_path.iterdir()] == ["graph.onnx"]
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # not mkstemp's 0600


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_engine_is_built_once_and_reused(shipped: Any, ort: Any, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: none is visible")
    pytest.importorskip("tensorrt", reason="needs TensorRT (pip install '.[tensorrt]' on a GPU machine)")
    profile = {"batch": (1, 1, 4), "text": (1, 8, 64), "audio": (1, 40, 400), "video": (1, 12, 128)}
    opts = dict(precision="fp32", cache_dir=str(tmp_path), onnx_path=ort.onnx_path, profile=profile)
    first = create_backend("tensorrt", None, shipped.model_id, **opts)
    second = create_backend("tensorrt", None, shipped.model_id, **opts)
    assert first.built_now and not second.built_now and second.engine_path == first.engine_path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.engine_path.name, "timing.cache"])
    x = window(shipped)
    np.testing.assert_allclose(second.infer(x).probs, ort.infer(x).probs, atol=1e-3)
