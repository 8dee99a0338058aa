"""A numpy re-implementation of the Keras 2 layers the FER2013 mini-Xception uses.

It interprets the Keras ``model_config`` JSON (the functional graph stored in the .hdf5) with weights in
Keras layout, independently of the torch rebuild, so the two can be compared. NHWC throughout.
Only what mini-Xception needs is supported: InputLayer, Conv2D, SeparableConv2D, BatchNormalization,
Activation (linear/relu/softmax), MaxPooling2D, Add, GlobalAveragePooling2D.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def _same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    # TensorFlow "same": output ceil(n/s); the odd pixel of padding goes after (bottom/right).
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _pad(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], padding: str, value: float) -> np.ndarray:
    if padding == "valid":
        return x
    if padding != "same":
        raise ValueError(f"unsupported padding {padding!r}")
    (top, bottom), (left, right) = _same_pads(x.shape[1], k[0], s[0]), _same_pads(x.shape[2], k[1], s[1])
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _windows(x: np.ndarray, k: tuple[int, int], s: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """All kernel-offset views: returns [kh*kw, N, Ho, Wo, C]."""
    n, h, w, c = x.shape
    ho, wo = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    views = [
        x[:, i : i + s[0] * (ho - 1) + 1 : s[0], j : j + s[1] * (wo - 1) + 1 : s[1], :]
        for i in range(k[0])
        for j in range(k[1])
    ]
    return np.stack(views), ho, wo


def conv2d(x: np.ndarray, kernel: np.ndarray, strides: tuple[int, int], padding: str) -> np.ndarray:
    """kernel: Keras [kh, kw, cin, cout]."""
    kh, kw, cin, cout = kernel.shape
    win, _, _ = _windows(_pad(x, (kh, kw), strides, padding, 0.0), (kh, kw), strides)
    return np.einsum("knhwc,kcf->nhwf", win, kernel.reshape(kh * kw, cin, cout), optimize=True)


def depthwise2d(x: np.ndarray, kernel: np.ndarray, strides: tuple[int, int], padding: str) -> np.ndarray:
    """kernel: Keras [kh, kw, cin, 1]."""
    kh, kw, cin, mult = kernel.shape
    assert mult == 1, "depth_multiplier 1 only"
    win, _, _ = _windows(_pad(x, (kh, kw), strides, padding, 0.0), (kh, kw), strides)
    return np.einsum("knhwc,kc->nhwc", win, kernel.reshape(kh * kw, cin), optimize=True)


def maxpool2d(x: np.ndarray, pool: tuple[int, int], strides: tuple[int, int], padding: str) -> np.ndarray:
    win, _, _ = _windows(_pad(x, pool, strides, padding, -np.inf), pool, strides)
    return win.max(axis=0)


def batchnorm(x: np.ndarray, w: dict[str, np.ndarray], eps: float) -> np.ndarray:
    return w["gamma"] * (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + eps) + w["beta"]


def activation(x: np.ndarray, name: str) -> np.ndarray:
    if name == "linear":
        return x
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise ValueError(f"unsupported activation {name!r}")


def run_keras_graph(
    model_config: dict[str, Any] | str,
    weights: dict[str, dict[str, np.ndarray]],
    x: np.ndarray,
    outputs: tuple[str, ...] = (),
) -> dict[str, np.ndarray]:
    """Evaluate a Keras functional model on NHWC float64 ``x``.

    weights: layer name -> {"kernel", "bias", "depthwise_kernel", "pointwise_kernel", "gamma", "beta",
    "moving_mean", "moving_variance"} as stored by Keras. Returns every layer's output by name.
    """
    cfg = json.loads(model_config) if isinstance(model_config, str) else model_config
    acts: dict[str, np.ndarray] = {}
    for layer in cfg["config"]["layers"]:
        kind, name, c = layer["class_name"], layer["name"], layer["config"]
        inputs = [acts[n[0]] for node in layer.get("inbound_nodes", []) for n in node]
        w = weights.get(name, {})
        if kind == "InputLayer":
            y = x.astype(np.float64)
        elif kind == "Conv2D":
            y = conv2d(inputs[0], w["kernel"], tuple(c["strides"]), c["padding"])
            if c.get("use_bias"):
                y = y + w["bias"]
            y = activation(y, c["activation"])
        elif kind == "SeparableConv2D":
            y = depthwise2d(inputs[0], w["depthwise_kernel"], tuple(c["strides"]), c["padding"])
            y = conv2d(y, w["pointwise_kernel"], (1, 1), "valid")
            if c.get("use_bias"):
                y = y + w["bias"]
            y = activation(y, c["activation"])
        elif kind == "BatchNormalization":
            y = batchnorm(inputs[0], w, c["epsilon"])
        elif kind == "Activation":
            y = activation(inputs[0], c["activation"])
        elif kind == "MaxPooling2D":
            y = maxpool2d(inputs[0], tuple(c["pool_size"]), tuple(c["strides"]), c["padding"])
        elif kind == "Add":
            y = sum(inputs[1:], inputs[0])
        elif kind == "GlobalAveragePooling2D":
            y = inputs[0].mean(axis=(1, 2))
        else:
            raise ValueError(f"layer {name}: unsupported Keras layer type {kind}")
        acts[name] = y
    return acts
