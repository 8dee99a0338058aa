"""The torch extractors on a CUDA device give the CPU's features (run where a GPU is present)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.encoders.denseface import DenseFaceEmbedder
from models.encoders.mini_xception import MiniXceptionEmbedder
from models.encoders.speech import Wav2Vec2Config, Wav2Vec2Extractor

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none is visible to torch"),
]


def test_face_models_match_cpu_on_cuda(hap_frames):
    from models.encoders.face import FaceDetector, crop_face

    with FaceDetector() as det:
        crops = np.stack([crop_face(f, det.detect(f)[0], 0.1, 64) for f in hap_frames[::8]])
    for cls, kwargs in ((MiniXceptionEmbedder, {}), (DenseFaceEmbedder, {"random_init": True})):
        cpu = cls(device="cpu", **kwargs)(crops)
        gpu = cls(device="cuda", **kwargs)(crops)
        np.testing.assert_allclose(gpu.features, cpu.features, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(gpu.probs, cpu.probs, atol=1e-3)


def test_wav2vec2_architecture_on_cuda():
    cfg = {"init": "random", "config_overrides": {"num_hidden_layers": 2}}
    audio = np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32)
    cpu = Wav2Vec2Extractor(Wav2Vec2Config(**cfg))(audio)
    gpu = Wav2Vec2Extractor(Wav2Vec2Config(device="cuda", **cfg))(audio)
    assert gpu.shape == cpu.shape and cpu.shape[1] == 768 and abs(len(cpu) - 100) <= 1.5
    np.testing.assert_allclose(gpu, cpu, atol=2e-2)  # TF32 convolutions/matmuls on recent GPUs
