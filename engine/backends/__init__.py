"""Fusion backends behind one interface, created by name. Implementations are imported lazily so that a
missing optional runtime (TensorRT) only matters when it is asked for."""

from __future__ import annotations

import importlib
from typing import Any

from engine.backends.base import FusionBackend, FusionInputs, FusionResult, softmax
from engine.backends.batching import BackendTimeout, BatchingBackend, BatchStats

# name -> (module, class). "tensorrt" lives in its own module with an optional dependency.
_REGISTRY: dict[str, tuple[str, str]] = {
    "onnxruntime": ("engine.backends.onnxruntime_backend", "OnnxRuntimeBackend"),
    "torch": ("engine.backends.torch_backend", "TorchBackend"),
    "tensorrt": ("engine.backends.tensorrt_backend", "TensorRTBackend"),
}


class BackendError(RuntimeError, ValueError):
    """A backend that cannot be built as asked on this machine (runtime or GPU missing, an option it
    refuses, calibration data for another model): the user's settings, reported in one line."""


def available_backends() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def preflight(name: str, device: str = "cpu") -> None:
    """Cheap checks that backend ``name`` can run on ``device`` here, before any model loads: its runtime
    imports and the device exists. Raises BackendError saying what is missing."""
    import importlib.util

    import torch

    if name not in _REGISTRY:
        raise BackendError(f"unknown fusion backend {name!r}; available: {sorted(_REGISTRY)}")
    cuda = device.startswith("cuda") or name == "tensorrt"
    if name == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        raise BackendError(
            "the tensorrt backend needs TensorRT, which is not installed here (pip install '.[tensorrt]' on "
            "a CUDA machine, or JetPack on Jetson); use backend.name=onnxruntime or torch"
        )
    if cuda and not torch.cuda.is_available():
        raise BackendError(f"the {name} backend on {device!r} needs a CUDA GPU, and none is visible here")
    if name == "onnxruntime" and device.startswith("cuda"):
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendError(
                "backend.device=cuda with onnxruntime needs onnxruntime-gpu (its CUDAExecutionProvider); "
                f"this onnxruntime has {ort.get_available_providers()}"
            )


def create_backend(name: str, model: Any, model_id: str, **options: Any) -> FusionBackend:
    """Build backend ``name`` for ``model`` (a torch fusion model) identified by ``model_id``."""
    if name not in _REGISTRY:
        raise BackendError(f"unknown fusion backend {name!r}; available: {sorted(_REGISTRY)}")
    module, cls = _REGISTRY[name]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if name == "tensorrt":
            raise BackendError(
                "the tensorrt backend is not available here: "
                f"{e}. It needs an NVIDIA GPU with TensorRT (pip install '.[tensorrt]'); "
                "use --backend onnxruntime or torch instead."
            ) from e
        raise
    backend_cls = getattr(mod, cls, None)
    if backend_cls is None:
        raise RuntimeError(f"backend module {module} does not define {cls}")
    import inspect

    params = inspect.signature(backend_cls.__init__).parameters
    allowed = sorted(k for k in params if k not in ("self", "model", "model_id"))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"backend {name} does not take option(s) {unknown}; its options are {allowed}")
    try:
        return backend_cls(model, model_id, **options)
    except (RuntimeError, ValueError) as e:
        raise BackendError(f"cannot build the {name} fusion backend: {e}") from e


__all__ = [
    "BackendError",
    "BackendTimeout",
    "BatchStats",
    "BatchingBackend",
    "FusionBackend",
    "FusionInputs",
    "FusionResult",
    "available_backends",
    "create_backend",
    "preflight",
    "softmax",
]
