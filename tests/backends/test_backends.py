"""Fusion backends give the same answers, the batcher keeps every stream's result, the profiler reports."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from engine.backends import BatchingBackend, create_backend
from engine.backends.base import FusionInputs
from engine.tools.backend_latency import window_inputs
from engine.tools.latency import main as profile_main
from models.cmarr import CMARR, CMARRConfig
from models.modalities import CONDITIONS

TINY = dict(text_dim=10, audio_dim=12, video_dim=7, d_model=16, umc_dim=8, flow_hidden=16, umc_heads=2,
            fusion_heads=2, num_segments=4, rcab_blocks=1, flow_steps=2, rcab_reduction=4)
DIMS = {"text": 10, "audio": 12, "video": 7}
PARITY_TOL = 1e-4  # onnxruntime fp32 vs torch fp32 (max |prob difference|)


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    torch.manual_seed(0)
    model = CMARR(CMARRConfig(**TINY)).eval()
    cache = tmp_path_factory.mktemp("cache")
    ort_b = create_backend("onnxruntime", model, "tiny-test", cache_dir=str(cache), threads=1)
    torch_b = create_backend("torch", model, "tiny-test")
    return model, ort_b, torch_b


@pytest.mark.parametrize("cond", list(CONDITIONS))
def test_cpu_backends_agree_for_every_mask_and_length(backends, cond):
    _, ort_b, torch_b = backends
    for lengths in ({"text": 1, "audio": 1, "video": 1}, {"text": 7, "audio": 40, "video": 12},
                    {"text": 31, "audio": 300, "video": 90}):
        x = window_inputs(DIMS, 3, lengths, seed=len(cond), avail=CONDITIONS[cond])
        a, b = ort_b.infer(x), torch_b.infer(x)
        assert a.probs.shape == (3, 4)
        assert np.allclose(a.probs.sum(-1), 1.0, atol=1e-5)
        assert np.max(np.abs(a.logits - b.logits)) < PARITY_TOL, (cond, lengths)


def test_tensorrt_absent_is_reported_clearly(backends):
    model = backends[0]
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="tensorrt"):
            create_backend("tensorrt", model, "tiny-test")
    else:
        pytest.skip("tensorrt is importable here; the GPU parity test covers it")


def _calibration(tmp_path, model_id: str):
    """Calibration windows for the tiny model: every mask at two lengths, as the engine would record."""
    from engine.backends.graphs import save_calibration
    from engine.backends.recording import unpad

    samples = []
    for i, mask in enumerate(CONDITIONS.values()):
        for lengths in ({"text": 8, "audio": 40, "video": 12}, {"text": 3, "audio": 90, "video": 30}):
            samples += unpad(window_inputs(DIMS, 4, lengths, seed=i, avail=mask))
    return save_calibration(samples, tmp_path / "calib.npz", model_id, DIMS)


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.parametrize(
    ("precision", "tol_same_graph", "tol_fp32"),
    [("fp32", 1e-3, 1e-3), ("fp16", 2e-2, 2e-2), ("int8", 5e-2, 0.1)],
)
def test_tensorrt_matches_onnxruntime_on_its_graph(backends, tmp_path, precision, tol_same_graph, tol_fp32):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: none is visible")
    pytest.importorskip("tensorrt", reason="needs TensorRT (pip install '.[tensorrt]' on a GPU machine)")
    model, _, torch_b = backends
    calib = _calibration(tmp_path, "tiny-test") if precision == "int8" else None
    trt_b = create_backend("tensorrt", model, "tiny-test", precision=precision, cache_dir=str(tmp_path),
                           calibration_npz=calib and str(calib), max_graphs=4,
                           profile={"batch": (1, 2, 8), "text": (1, 8, 64), "audio": (1, 40, 400),
                                    "video": (1, 12, 128)})
    same_graph = create_backend("onnxruntime", None, "tiny-test", onnx_path=trt_b.onnx_path, threads=1)
    for cond, mask in CONDITIONS.items():
        x = window_inputs(DIMS, 2, {"text": 8, "audio": 40, "video": 12}, avail=mask)
        got = trt_b.infer(x).probs
        assert np.max(np.abs(got - same_graph.infer(x).probs)) < tol_same_graph, cond
        assert np.max(np.abs(got - torch_b.infer(x).probs)) < tol_fp32, cond
    # A stream whose windows keep changing length: captured graphs stay bounded, results stay right.
    for n in range(12):
        x = window_inputs(DIMS, 1, {"text": 8, "audio": 41 + n, "video": 12}, avail=CONDITIONS["tav"])
        assert np.max(np.abs(trt_b.infer(x).probs - same_graph.infer(x).probs)) < tol_same_graph
    assert len(trt_b._graphs) == 4 and trt_b._graphs.evicted == 13 - 4  # 13 shapes seen, 4 kept


def _windows(n: int) -> list[FusionInputs]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        w = {m: rng.standard_normal((3 + i, d)).astype(np.float32) for m, d in DIMS.items()}
        w["avail"] = np.asarray(list(CONDITIONS.values())[i % 7], dtype=np.float32)
        out.append(FusionInputs.from_samples([w], DIMS))
    return out


def test_batching_backend_returns_each_stream_its_own_result(backends):
    _, ort_b, _ = backends
    windows = _windows(12)
    expected = [ort_b.infer(x).probs[0] for x in windows]
    shared = BatchingBackend(ort_b, max_batch=8, max_wait_ms=200.0)
    start = threading.Barrier(12)

    def stream(x: FusionInputs) -> np.ndarray:
        start.wait()  # all streams submit together, as concurrent engines at the same hop would
        return shared.infer(x).probs[0]

    with ThreadPoolExecutor(max_workers=12) as pool:
        got = list(pool.map(stream, windows))
    shared.stop()
    assert shared.stats.windows == 12 and shared.stats.batches < 12 and max(shared.stats.sizes) > 1
    assert max(shared.stats.sizes) <= 8
    for g, e in zip(got, expected, strict=True):
        assert np.allclose(g, e, atol=1e-5)  # padding to the batch's longest window changes nothing
    with pytest.raises(RuntimeError, match="closed"):
        shared.infer(windows[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: a second device to move to")
def test_torch_backend_leaves_a_shared_model_where_it_was(backends):
    model = backends[0]  # the CPU fp32 model the other backends were built from
    gpu = create_backend("torch", model, "tiny-test", device="cuda", dtype="fp16")
    p = next(model.parameters())
    assert p.device.type == "cpu" and p.dtype == torch.float32  # what the next backend built from it sees
    assert next(gpu.model.parameters()).dtype == torch.float16


def test_batching_backend_infer_racing_stop_never_hangs(backends):
    """A window submitted while stop() runs is either served or refused; it never waits forever. The
    queue below calls stop() from another thread at the worst moment: after infer() found the backend
    open, before its request is queued."""
    import queue as queue_mod

    _, ort_b, _ = backends
    shared = BatchingBackend(ort_b, max_batch=4, max_wait_ms=1.0)
    real_put = shared._queue.put
    stopper: list[threading.Thread] = []

    def put_racing_stop(item, *a, **k):  # noqa: ANN001, ANN002, ANN003
        if item is not None and not stopper:
            stopper.append(threading.Thread(target=shared.stop))
            stopper[0].start()
            stopper[0].join(timeout=0.3)  # stop() completes here unless it must wait for this put
        real_put(item, *a, **k)

    shared._queue.put = put_racing_stop  # type: ignore[method-assign]
    out: queue_mod.Queue = queue_mod.Queue()
    t = threading.Thread(target=lambda: out.put(shared.infer(_windows(1)[0])), daemon=True)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive(), "infer() hung: its request was queued after the closing sentinel"
    assert out.get_nowait().probs.shape[0] == 1
    stopper[0].join(timeout=10)
    with pytest.raises(RuntimeError, match="closed"):
        shared.infer(_windows(1)[0])


def test_batching_backend_failure_reaches_every_waiting_stream(backends):
    _, ort_b, _ = backends
    sample = {"text": np.zeros((2, 99), np.float32), "audio": np.zeros((2, 12), np.float32),
              "video": np.zeros((2, 7), np.float32), "avail": np.ones(3, np.float32)}
    bad = FusionInputs.from_samples([sample], {"text": 99, "audio": 12, "video": 7})
    shared = BatchingBackend(ort_b, max_batch=4, max_wait_ms=100.0)
    start = threading.Barrier(2)

    def stream(_: int):
        start.wait()
        try:
            shared.infer(bad)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            return e
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        res = list(pool.map(stream, range(2)))
    assert all(isinstance(r, Exception) for r in res), res  # text of width 99 cannot enter a 10-wide graph
    ok = shared.infer(_windows(1)[0])  # the batcher survives a failed batch
    assert ok.probs.shape == (1, 4)
    shared.stop()


def test_profiler_fusion_mode_json(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # exported graphs stay in the test's dir
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("\n".join(f"{k}: {v}" for k, v in TINY.items()))
    out = tmp_path / "p.json"
    rc = profile_main(["--config", str(cfg), "--backend", "onnxruntime,torch,tensorrt", "--iters", "20",
                       "--warmup", "3", "--batches", "1", "8", "--text-len", "8", "--audio-len", "30",
                       "--video-len", "9", "--json", str(out), "--threads", "1"])
    assert rc == 0
    rep = json.loads(out.read_text())
    names = [r["backend"] for r in rep["results"]]
    assert names == ["onnxruntime", "torch", "tensorrt"]
    ort_r, torch_r = rep["results"][0], rep["results"][1]
    for r in (ort_r, torch_r):
        lat = r["latency_ms_batch1"]
        assert lat["n"] == 20 and 0 < lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"]
        assert r["warmup_ms"]["n"] == 3 and r["first_call_ms"] > 0
        assert set(r["throughput"]) == {"1", "8"} and r["throughput"]["8"]["windows_per_s"] > 0
    assert "torch_vs_onnxruntime" in rep["latency_ratios"]
    assert rep["device_info"]["cpu_count"] >= 1 and rep["device_info"]["torch"]
    if rep["device_info"]["tensorrt"] is None:
        assert "tensorrt" in rep["results"][2]["error"]


def test_torch_backend_validates_mode_and_precision(backends):
    model = backends[0]
    with pytest.raises(ValueError, match="mode"):
        create_backend("torch", model, "tiny-test", mode="turbo")
    with pytest.raises(ValueError, match="GPU"):
        create_backend("torch", model, "tiny-test", dtype="fp16")  # half precision is for CUDA devices
    with pytest.raises(ValueError, match="CUDA"):
        create_backend("torch", model, "tiny-test", mode="cuda_graphs")
    assert create_backend("torch", model, "tiny-test").describe()["mode"] == "eager"


@pytest.mark.gpu
@pytest.mark.parametrize(("mode", "dtype"), [("eager", "fp16"), ("eager", "bf16"), ("cuda_graphs", "fp32")])
def test_torch_backend_gpu_modes_match_fp32(mode, dtype):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: none is visible")
    torch.manual_seed(0)
    ref_model = CMARR(CMARRConfig(**TINY)).eval()
    model = CMARR(CMARRConfig(**TINY)).eval()
    model.load_state_dict(ref_model.state_dict())
    ref = create_backend("torch", ref_model, "tiny-test")
    gpu = create_backend("torch", model, "tiny-test", device="cuda", mode=mode, dtype=dtype)
    for cond, mask in CONDITIONS.items():
        x = window_inputs(DIMS, 2, {"text": 8, "audio": 40, "video": 12}, avail=mask)
        assert np.max(np.abs(gpu.infer(x).probs - ref.infer(x).probs)) < 2e-2, (cond, mode, dtype)


def test_tensorrt_graph_cache_is_bounded_lru():
    from engine.backends.tensorrt_backend import GraphCache

    cache = GraphCache(3)
    evicted = []
    for length in range(10):  # a stream whose window lengths keep changing
        evicted += cache.put(("audio", length), f"graph-{length}")
        if length == 4:
            assert cache.get(("audio", 2)) == "graph-2"  # used again: kept over older ones
    assert len(cache) == 3 and cache.evicted == 7
    assert cache.get(("audio", 9)) == "graph-9" and cache.get(("audio", 0)) is None
    assert "graph-2" in evicted and evicted[0] == "graph-0"
    with pytest.raises(ValueError, match="max_graphs"):
        GraphCache(0)


def test_int8_calibration_with_fewer_samples_than_a_batch():
    from engine.backends.graphs import calibration_batches

    rng = np.random.default_rng(0)
    data = {"avail": np.ones((3, 3), np.float32), "audio": rng.standard_normal((3, 10, 4)).astype(np.float32)}
    batches = calibration_batches(data, batch=8)  # 3 samples, batch 8: one batch of 3, not an IndexError
    assert len(batches) == 1 and batches[0]["audio"].shape == (3, 10, 4)
    assert [b["avail"].shape[0] for b in calibration_batches({"avail": np.ones((10, 3))}, 4)] == [4, 4]
    with pytest.raises(ValueError, match="no samples"):
        calibration_batches({"avail": np.ones((0, 3))}, 4)
    with pytest.raises(ValueError, match="fusion inputs"):
        calibration_batches({"x": np.ones((2, 3))}, 4)


def test_tensorrt_int8_cache_key_follows_the_calibration_data(tmp_path):
    from types import SimpleNamespace

    from engine.backends.tensorrt_backend import ProfileShapes, engine_name

    onnx = tmp_path / "fusion.onnx"
    onnx.write_bytes(b"graph bytes")
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    np.savez(a, avail=np.ones((4, 3), np.float32))
    np.savez(b, avail=np.zeros((4, 3), np.float32))
    gpu = SimpleNamespace(name="NVIDIA H200", major=9, minor=0)

    def name(precision, calib=None):
        return engine_name(onnx, gpu, "10.9", precision, ProfileShapes(), calib)

    assert len({name("int8", a), name("int8", b)}) == 2  # new calibration data, new engine
    assert name("int8", a) == name("int8", a) and name("int8", a).startswith("fusion-int8-")
    assert name("fp16", a) == name("fp16")  # calibration data does not touch an fp16 engine
