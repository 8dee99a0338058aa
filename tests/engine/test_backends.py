"""Fusion backends: onnxruntime (exported graph, cached by model id) against torch, batched, all masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.backends import FusionInputs, available_backends, create_backend
from engine.backends import onnxruntime_backend as ortb
from models.cmarr import CMARR, CMARRConfig
from models.modalities import CONDITIONS

DIMS = {"text": 12, "audio": 10, "video": 8}


@pytest.fixture(scope="module")
def small_model() -> CMARR:
    # A small CM-ARR keeps the export quick; the backend code is the same for any size.
    torch.manual_seed(0)
    cfg = CMARRConfig(
        text_dim=12,
        audio_dim=10,
        video_dim=8,
        d_model=16,
        num_segments=4,
        umc_dim=8,
        umc_heads=2,
        fusion_heads=2,
        flow_steps=1,
        flow_hidden=16,
        rcab_blocks=1,
        rcab_reduction=4,
    )
    return CMARR(cfg).eval()


@pytest.fixture(scope="module")
def ort_backend(small_model: CMARR, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    cache = tmp_path_factory.mktemp("graphs")
    return create_backend("onnxruntime", small_model, "small-test-model", cache_dir=str(cache), threads=1)


def batch(
    lengths: list[tuple[int, int, int]], masks: list[tuple[int, int, int]], seed: int = 0
) -> FusionInputs:
    rng = np.random.default_rng(seed)
    samples = []
    for (lt, la, lv), m in zip(lengths, masks, strict=True):
        samples.append(
            {
                "text": rng.standard_normal((lt, 12)).astype(np.float32),
                "audio": rng.standard_normal((la, 10)).astype(np.float32),
                "video": rng.standard_normal((lv, 8)).astype(np.float32),
                "avail": np.array(m),
            }
        )
    return FusionInputs.from_samples(samples, DIMS)


def test_padding_and_masks() -> None:
    b = batch([(3, 5, 0), (1, 2, 4)], [(1, 1, 0), (1, 0, 1)])
    assert b.text.shape == (2, 3, 12) and b.video.shape == (2, 4, 8)
    assert b.video_mask[0].sum() == 0 and b.video_mask[1].sum() == 4  # empty modality: no valid row
    assert b.audio_mask.tolist() == [[True] * 5, [True, True, False, False, False]]
    with pytest.raises(ValueError, match="audio features"):
        FusionInputs.from_samples(
            [
                {
                    "text": np.zeros((1, 12)),
                    "audio": np.zeros((2, 3)),
                    "video": np.zeros((1, 8)),
                    "avail": [1, 1, 1],
                }
            ],
            DIMS,
        )


def test_onnxruntime_matches_torch_batched_all_conditions(small_model: CMARR, ort_backend) -> None:  # noqa: ANN001
    tb = create_backend("torch", small_model, "small-test-model")
    masks = list(CONDITIONS.values())
    lengths = [(1 + i, 3 + 2 * i, 2 + (i % 3)) for i in range(len(masks))]  # ragged: padding exercised
    inp = batch(lengths, masks, seed=1)
    got, ref = ort_backend.infer(inp), tb.infer(inp)
    assert got.probs.shape == (7, 4)
    np.testing.assert_allclose(got.logits, ref.logits, atol=1e-4)
    np.testing.assert_allclose(got.probs.sum(1), 1.0, atol=1e-5)
    # each row is independent of its batch mates: row 3 alone gives the same answer
    one = batch([lengths[3]], [masks[3]], seed=1)
    one.text[0], one.audio[0], one.video[0] = (
        inp.text[3, : one.text.shape[1]],
        inp.audio[3, : one.audio.shape[1]],
        inp.video[3, : one.video.shape[1]],
    )
    np.testing.assert_allclose(ort_backend.infer(one).logits[0], got.logits[3], atol=1e-4)


def test_graph_cache_is_reused(small_model: CMARR, ort_backend, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    path = ort_backend.onnx_path
    assert path.is_file() and path.parent.name.startswith("graphs")

    def no_export(*a: object, **k: object) -> None:
        raise AssertionError("exported again although the graph is cached")

    monkeypatch.setattr("models.export.export_onnx", no_export)
    again = create_backend(
        "onnxruntime", small_model, "small-test-model", cache_dir=str(path.parent), graph_optimization="basic"
    )
    assert again.onnx_path == path
    with pytest.raises(AssertionError, match="exported again"):  # a new model id does need an export
        ortb.cached_graph(small_model, "another-model", path.parent)


def test_registry_errors(small_model: CMARR) -> None:
    assert set(available_backends()) == {"onnxruntime", "torch", "tensorrt"}
    with pytest.raises(ValueError, match="unknown fusion backend"):
        create_backend("tflite", small_model, "x")
    try:
        import engine.backends.tensorrt_backend  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(RuntimeError, match="tensorrt backend is not available"):
            create_backend("tensorrt", small_model, "x")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            create_backend("torch", small_model, "x", device="cuda")


def test_unknown_backend_options_are_refused(small_model: CMARR, tmp_path) -> None:  # noqa: ANN001
    """An option a backend does not read is an error, never silently dropped: torch timed in fp32 next
    to TensorRT in fp16 because "precision" went nowhere."""
    with pytest.raises(ValueError, match=r"backend torch does not take option\(s\) \['precision'\]"):
        create_backend("torch", small_model, "x", precision="fp16")
    with pytest.raises(ValueError, match="does not take option"):
        create_backend("onnxruntime", small_model, "x", cache_dir=str(tmp_path), mode="compile")
    from engine.config import BackendConfig, load_engine_config

    # The config reaches every mode of every backend, and refuses a field the chosen backend ignores.
    assert BackendConfig(name="torch", threads=1).options() == {
        "device": "cpu",
        "threads": 1,
        "mode": "eager",
        "dtype": "fp32",
    }
    calib = tmp_path / "calib.npz"
    calib.write_bytes(b"")
    trt = BackendConfig(name="tensorrt", device="cuda", precision="int8", calibration=str(calib))
    assert trt.options() == {
        "device": "cuda",
        "cache_dir": None,
        "precision": "int8",
        "calibration_npz": str(calib),
    }
    with pytest.raises(ValueError, match="needs backend.calibration"):
        BackendConfig(name="tensorrt", precision="int8")
    with pytest.raises(ValueError, match="does not exist; record it with python -m engine.calibrate"):
        BackendConfig(name="tensorrt", precision="int8", calibration=str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="backend.precision is read by the tensorrt"):
        load_engine_config(None, ["backend.name=torch", "backend.precision=int8"])
    with pytest.raises(ValueError, match="backend.mode must be"):
        load_engine_config(None, ["backend.name=torch", "backend.mode=turbo"])
    with pytest.raises(ValueError, match="calibration is for"):
        BackendConfig(name="tensorrt", calibration="calib.npz")
    cfg = load_engine_config(None, ["backend.name=torch", "backend.threads=1"])
    assert cfg.backend.options()["threads"] == 1


def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    from engine.backends.cache import default_cache_dir

    assert default_cache_dir("onnx") == tmp_path / "cmarr-engine" / "onnx"
    assert default_cache_dir("tensorrt") == tmp_path / "cmarr-engine" / "tensorrt"
