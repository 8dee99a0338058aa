"""Fusion backends give the same answers, the batcher keeps every stream's result, the profiler reports."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch

from engine.backends import create_backend
from engine.backends.base import FusionInputs
from engine.fusion_batcher import FusionBatcher
from engine.profile import main as profile_main
from engine.profile import window_inputs
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


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_matches_torch_fp32(backends, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: none is visible")
    pytest.importorskip("tensorrt", reason="needs TensorRT (pip install '.[tensorrt]' on a GPU machine)")
    model, _, torch_b = backends
    trt_b = create_backend("tensorrt", model, "tiny-test", precision="fp16", cache_dir=str(tmp_path),
                           profile={"batch": (1, 2, 8), "text": (1, 8, 64), "audio": (1, 40, 400),
                                    "video": (1, 12, 128)})
    for cond, mask in CONDITIONS.items():
        x = window_inputs(DIMS, 2, {"text": 8, "audio": 40, "video": 12}, avail=mask)
        got, ref = trt_b.infer(x), torch_b.infer(x)
        assert np.max(np.abs(got.probs - ref.probs)) < 2e-2, cond  # fp16 tolerance on probabilities


def test_batcher_returns_each_stream_its_own_result(backends):
    _, ort_b, _ = backends
    rng = np.random.default_rng(0)
    windows = []
    for i in range(12):
        w = {m: rng.standard_normal((3 + i, d)).astype(np.float32) for m, d in DIMS.items()}
        w["avail"] = np.asarray(list(CONDITIONS.values())[i % 7], dtype=np.float32)
        windows.append(w)
    expected = [ort_b.infer(FusionInputs.from_samples([w], DIMS)).probs[0] for w in windows]

    async def run():
        async with FusionBatcher(ort_b, DIMS, max_batch=8, max_wait_ms=50.0) as b:
            got = await asyncio.gather(*(b.infer(w) for w in windows))
            return got, b.stats

    got, stats = asyncio.run(run())
    assert stats.windows == 12 and stats.batches < 12 and max(stats.sizes) > 1  # windows really shared calls
    for g, e in zip(got, expected, strict=True):
        assert np.allclose(g, e, atol=1e-5)  # padding to the batch's longest window changes nothing


def test_batcher_failure_reaches_every_waiting_stream(backends):
    _, ort_b, _ = backends
    bad = {"text": np.zeros((2, 99), np.float32), "audio": np.zeros((2, 12), np.float32),
           "video": np.zeros((2, 7), np.float32), "avail": np.ones(3, np.float32)}

    async def run():
        async with FusionBatcher(ort_b, DIMS, max_batch=4, max_wait_ms=20.0) as b:
            return await asyncio.gather(b.infer(bad), b.infer(bad), return_exceptions=True)

    res = asyncio.run(run())
    assert all(isinstance(r, ValueError) for r in res)


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
