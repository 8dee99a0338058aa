"""Fusion backends behind one interface, created by name. Implementations are imported lazily so that a
missing optional runtime (TensorRT) only matters when it is asked for."""

from __future__ import annotations

import importlib
from typing import Any

from .base import FusionBackend, FusionInputs, FusionResult, softmax
from .batching import BatchingBackend, BatchStats

# name -> (module, class). "tensorrt" lives in its own module with an optional dependency.
_REGISTRY: dict[str, tuple[str, str]] = {
    "onnxruntime": ("engine.backends.onnxruntime_backend", "OnnxRuntimeBackend"),
    "torch": ("engine.backends.torch_backend", "TorchBackend"),
    "tensorrt": ("engine.backends.tensorrt_backend", "TensorRTBackend"),
}


def available_backends() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def create_backend(name: str, model: Any, model_id: str, **options: Any) -> FusionBackend:
    """Build backend ``name`` for ``model`` (a torch fusion model) identified by ``model_id``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown fusion backend {name!r}; available: {sorted(_REGISTRY)}")
    module, cls = _REGISTRY[name]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if name == "tensorrt":
            raise RuntimeError(
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
    return backend_cls(model, model_id, **options)


__all__ = [
    "BatchStats",
    "BatchingBackend",
    "FusionBackend",
    "FusionInputs",
    "FusionResult",
    "available_backends",
    "create_backend",
    "softmax",
]
