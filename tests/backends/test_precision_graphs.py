"""The fp16 and int8 fusion graphs that TensorRT builds, checked where no GPU is needed: onnxruntime on
the CPU runs the same graphs. The shipped model, windows recorded by the engine from real clips:
calibration on one CREMA-D speaker (1001, audio-visual), evaluation on another (1002, audio only)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import pytest

from engine.backends.graphs import (
    fp16_graph,
    int8_graph,
    load_calibration,
    precision_graph,
    save_calibration,
    with_dropped_modalities,
)
from engine.config import build_engine_config
from engine.core.shared import SharedModels
from engine.tools.int8_windows import main as calibrate_main
from engine.tools.int8_windows import record_windows
from models.modalities import INPUT_NAMES
from tests.engine.media import ANG, CREMAD


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, shipped_trt_graph):
    """The shipped model's fp32 graph as TensorRT builds from it, and fusion windows recorded through
    the engine."""
    out = tmp_path_factory.mktemp("calibration")
    cfg = build_engine_config()
    models = SharedModels.load(cfg)
    onnx_path = shipped_trt_graph
    try:
        calib = record_windows(models, cfg, sorted(CREMAD.glob("1001_*.flv")))
        held_out = record_windows(models, cfg, sorted((CREMAD / "audio-1002").glob("*.mp3")))
    finally:
        models.close()
    assert not calib.failed and not held_out.failed
    calib, held_out = calib.samples, held_out.samples
    model_id, dims = models.fusion.cache_key, models.fusion.dims
    calib_npz = save_calibration(with_dropped_modalities(calib), out / "calib_1001.npz", model_id, dims)
    eval_npz = save_calibration(with_dropped_modalities(held_out), out / "eval_1002.npz", model_id, dims)
    return {
        "onnx": onnx_path,
        "calib": calib_npz,
        "eval": eval_npz,
        "model_id": model_id,
        "out": out,
        "windows": (len(calib), len(held_out)),
    }


def _logits(graph: Path, data: dict[str, np.ndarray]) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"])
    rows = [
        sess.run(["logits"], {k: data[k][i : i + 1] for k in INPUT_NAMES})[0][0]
        for i in range(data["avail"].shape[0])
    ]
    return np.asarray(rows, np.float64)


def _probs(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def reference(recorded):
    data = load_calibration(recorded["eval"], recorded["model_id"])
    return data, _logits(recorded["onnx"], data)


def test_recorded_windows_cover_every_mask_of_their_modalities(recorded):
    calib = load_calibration(recorded["calib"], recorded["model_id"])
    n_calib, n_eval = recorded["windows"]
    assert n_calib >= 10 and n_eval >= 10
    masks = Counter(tuple(a) for a in calib["avail"].astype(int).tolist())
    assert len(masks) == 7 and set(masks.values()) == {n_calib}  # A/V clips with speech: all seven masks
    dropped = calib["avail"] == 0
    for i, m in enumerate(("text", "audio", "video")):  # a dropped modality has no valid rows
        assert not calib[f"{m}_mask"][dropped[:, i]].any()


def test_fp16_graph_matches_fp32_on_an_unseen_speaker(recorded, reference):
    data, ref = reference
    graph = fp16_graph(recorded["onnx"], recorded["out"])
    model = onnx.load(str(graph))
    assert [o.name for o in model.graph.output] == ["logits"]
    assert all(
        i.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16 for i in model.graph.input
    )  # fp32 I/O
    half = [
        v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    ]
    matmuls = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm")]
    assert matmuls and all(n.output[0] in half for n in matmuls)  # the products run in half precision
    got = _logits(graph, data)
    assert np.isfinite(got).all()
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.98
    assert np.abs(_probs(got) - _probs(ref)).max() < 0.02
    assert fp16_graph(recorded["onnx"], recorded["out"]) == graph  # cached


def test_int8_graph_calibrated_on_one_speaker_holds_on_another(recorded, reference):
    data, ref = reference
    graph = int8_graph(recorded["onnx"], recorded["calib"], recorded["out"], recorded["model_id"])
    model = onnx.load(str(graph))
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["QuantizeLinear"]
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    matmuls = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm")]
    # Explicit quantization as TensorRT reads it: each product's inputs come out of DequantizeLinear.
    quantized = [n for n in matmuls if all(producers.get(i) == "DequantizeLinear" for i in n.input[:2])]
    assert len(quantized) >= 0.5 * len(matmuls)
    # TensorRT's rules for Q/DQ: int8 only (no int32 bias), zero points 0, weights in [-127, 127].
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert all(inits[n.input[2]].dtype == np.int8 and not inits[n.input[2]].any() for n in qdq)
    weights = [inits[n.input[0]] for n in qdq if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert weights and all(w.dtype == np.int8 and w.min() >= -127 for w in weights)
    got = _logits(graph, data)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.9
    assert np.abs(_probs(got) - _probs(ref)).max() < 0.15
    assert np.abs(_probs(got) - _probs(ref)).mean() < 0.03


def test_int8_graph_follows_its_calibration_data_and_model(recorded):
    other = recorded["out"] / "eval_as_calib.npz"
    other.write_bytes(recorded["eval"].read_bytes())
    a = int8_graph(recorded["onnx"], recorded["calib"], recorded["out"], recorded["model_id"])
    b = int8_graph(recorded["onnx"], other, recorded["out"], recorded["model_id"])
    assert a != b  # other windows, another graph (and so another TensorRT engine)
    assert (
        precision_graph("int8", recorded["onnx"], recorded["out"], recorded["calib"], recorded["model_id"])
        == a
    )
    assert precision_graph("fp32", recorded["onnx"], recorded["out"]) == recorded["onnx"]
    with pytest.raises(ValueError, match="recorded for model"):
        int8_graph(recorded["onnx"], recorded["calib"], recorded["out"], "f" * 64)
    with pytest.raises(ValueError, match="engine.calibrate"):
        precision_graph("int8", recorded["onnx"], recorded["out"])


def test_calibration_file_errors_are_one_clear_line(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_calibration(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        load_calibration(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, avail=np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="lacks"):
        load_calibration(partial)


def test_calibrate_command_records_the_model_it_serves(tmp_path, capsys):
    out = tmp_path / "calib.npz"
    assert calibrate_main([str(ANG), "--out", str(out), "--as-recorded"]) == 0
    summary = capsys.readouterr().out
    data = load_calibration(out)
    with np.load(out) as z:
        model_id = str(z["model_id"])
    assert model_id in summary and data["avail"].shape[0] >= 1
    assert (data["avail"] == 1).all()  # as recorded: the clip has speech and a face throughout
    assert calibrate_main([str(tmp_path / "nope.flv"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
