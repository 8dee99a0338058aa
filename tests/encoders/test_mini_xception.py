from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file

import models.encoders.mini_xception as mx
from models.encoders.face import FaceDetector, crop_face
from tools.convert_fer import keras_to_torch, torch_to_keras
from tools.keras_reference import run_keras_graph


@pytest.fixture(scope="module")
def keras_side():
    """Keras config + Keras-layout weights recovered from the committed safetensors."""
    path = mx.default_weights_path()
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    return meta["keras_model_config"], torch_to_keras(load_file(str(path))), meta


@pytest.fixture(scope="module")
def real_crops(ang_frames, hap_frames) -> np.ndarray:
    with FaceDetector() as det:
        crops = []
        for f in (ang_frames[20], ang_frames[40], hap_frames[30], hap_frames[45]):
            crops.append(crop_face(f, det.detect(f)[0], 0.1, 64))
    return np.stack(crops)


def test_committed_weights_record_their_source(keras_side):
    _, _, meta = keras_side
    assert json.loads(meta["class_names"]) == list(mx.CLASS_NAMES)
    assert meta["source_sha256"] == "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
    state = load_file(str(mx.default_weights_path()))
    # The layout conversion is a bijection: Keras -> torch -> Keras -> torch gives the same tensors.
    again = keras_to_torch(torch_to_keras(state))
    assert set(again) == set(state)
    assert all(np.array_equal(again[k], state[k]) for k in state)


def test_torch_matches_numpy_keras_reference_on_real_faces(keras_side, real_crops):
    cfg, kw, _ = keras_side
    x = mx.preprocess(real_crops)  # [4, 1, 64, 64]
    acts = run_keras_graph(cfg, kw, x.numpy().transpose(0, 2, 3, 1).astype(np.float64))
    model = mx.load_mini_xception()
    with torch.inference_mode():
        logits, feat = model(x)
    np.testing.assert_allclose(logits.softmax(-1).numpy(), acts["predictions"], atol=1e-5)
    np.testing.assert_allclose(feat.numpy(), acts["add_4"].mean(axis=(1, 2)), atol=1e-5)


def test_top_left_padding_would_not_match_keras(keras_side, real_crops, monkeypatch):
    # Guard for the classic porting bug: torch-style symmetric/top-left "same" max-pool padding.
    cfg, kw, _ = keras_side
    x = mx.preprocess(real_crops)
    ref = run_keras_graph(cfg, kw, x.numpy().transpose(0, 2, 3, 1).astype(np.float64))["predictions"]

    def top_left_pad(t, kernel, stride, value=0.0):
        pads = []
        for n in (t.shape[-1], t.shape[-2]):
            total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
            pads += [total - total // 2, total // 2]
        return torch.nn.functional.pad(t, pads, value=value) if any(pads) else t

    monkeypatch.setattr(mx, "tf_same_pad", top_left_pad)
    with torch.inference_mode():
        wrong = mx.load_mini_xception()(x)[0].softmax(-1).numpy()
    assert np.abs(wrong - ref).max() > 1e-2


def test_classifies_real_cremad_faces(extractors, hap_frames, ang_frames):
    fx = extractors.face
    hap = fx.extract(hap_frames[::4])
    assert hap.present.mean() >= 0.9
    mean_hap = hap.probs[hap.present].mean(0)
    assert mx.CLASS_NAMES[int(mean_hap.argmax())] == "happy"
    ang = fx.extract(ang_frames[::4])
    mean_ang = ang.probs[ang.present].mean(0)
    assert mx.CLASS_NAMES[int(mean_ang.argmax())] == "angry"
    # The offline profile appends the model's own log-probabilities to the 128-d embedding.
    assert hap.features.shape[1] == 128 + 7
    logp = hap.features[hap.present, 128:]
    assert np.allclose(np.exp(logp), np.clip(hap.probs[hap.present], 1e-6, 1), atol=1e-5)


def test_input_checks():
    with pytest.raises(ValueError, match="64x64"):
        mx.preprocess(np.zeros((2, 48, 48), np.uint8))
    emb = mx.MiniXceptionEmbedder()
    out = emb(np.zeros((0, 64, 64), np.uint8))
    assert out.features.shape == (0, 128) and out.probs.shape == (0, 7)
