"""Fusion in onnxruntime (default; CPU). The graph is exported once per model id and export code version
into a cache folder (``engine/backends/cache.py``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from engine.backends.base import FusionBackend, FusionInputs, FusionResult, softmax
from engine.backends.cache import atomic_write, default_cache_dir, export_version

_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def graph_name(model_id: str, version: str, exporter: str = "auto") -> str:
    """The cache file name of the fp32 graph of ``model_id`` exported by code of ``version``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id)
    return f"{safe}-export{version}{'' if exporter == 'auto' else '-' + exporter}.onnx"


def cached_graph(
    model: torch.nn.Module, model_id: str, cache_dir: str | Path | None = None, exporter: str = "auto"
) -> Path:
    """Path of the exported graph of ``model_id``, exported on first use (written atomically). Keyed by
    the model id, the export code's version (``export_version``) and the exporter
    (``models.export.EXPORTERS``): an edit to the export or the model code exports again instead of
    reusing a stale graph."""
    from models import export

    folder = Path(cache_dir) if cache_dir else default_cache_dir("onnx")
    path = folder / graph_name(model_id, export_version(model), exporter)
    if path.is_file() and path.stat().st_size > 0:
        return path
    logging.getLogger("engine").info("exporting the fusion graph for onnxruntime into %s (once per model)",
                                     folder)
    return atomic_write(path, lambda tmp: export.export_onnx(model, tmp, exporter=exporter))


class OnnxRuntimeBackend(FusionBackend):
    name = "onnxruntime"

    def __init__(
        self,
        model: torch.nn.Module | None,
        model_id: str,
        device: str = "cpu",
        threads: int = 2,
        graph_optimization: str = "all",
        cache_dir: str | None = None,
        onnx_path: str | Path | None = None,
    ) -> None:
        super().__init__(model_id)
        import onnxruntime as ort

        if onnx_path is None:
            if model is None:
                raise ValueError("onnxruntime backend needs a model to export or an onnx_path")
            onnx_path = cached_graph(model, model_id, cache_dir)
        self.onnx_path = Path(onnx_path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[graph_optimization])
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError(
                    f"onnxruntime backend: device {device!r} requested but this onnxruntime has "
                    f"no CUDAExecutionProvider (available: {ort.get_available_providers()})"
                )
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(self.onnx_path), sess_options=so, providers=providers)
        self._inputs = {i.name for i in self.session.get_inputs()}

    def infer(self, inputs: FusionInputs) -> FusionResult:
        feed = {k: np.ascontiguousarray(v) for k, v in inputs.feed().items() if k in self._inputs}
        (logits,) = self.session.run(["logits"], feed)
        logits = np.asarray(logits, dtype=np.float32)
        return FusionResult(logits=logits, probs=softmax(logits))

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "onnx": self.onnx_path.name}
