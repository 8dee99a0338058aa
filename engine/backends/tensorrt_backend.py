"""Fusion in TensorRT: an engine built from the exported ONNX graph, fp16 by default.

* Optimization profile: dynamic batch and lengths, with min/opt/max per dimension from options.
* Engine cache keyed by the bytes of the ONNX graph it is built from, the GPU (name + compute
  capability), the TensorRT version, the precision, the profile, the workspace and the version of the
  build code (``build_version``); a timing cache is kept beside it and reused across builds. Both are
  written atomically (``engine/backends/cache.py``), so concurrent builds and interrupted ones leave no
  partial file.
* Runs on a dedicated CUDA stream with torch tensors as device buffers; for shapes seen before it
  replays a captured CUDA graph (``cuda_graphs=True``), which removes per-call launch overhead. At most
  ``max_graphs`` graphs (and their buffers) are kept, least recently used evicted: a stream of varying
  lengths cannot grow device memory without bound.
* Strongly typed: the precision lives in the graph it builds (``engine/backends/graphs.py``): the
  exported fp32 graph, its fp16 conversion (fp32 inputs and outputs), or its int8 Q/DQ form with
  activation ranges calibrated on real fusion inputs (``python -m engine.calibrate``). This is the only
  way TensorRT 11 builds reduced precision (its ``BuilderFlag.FP16``/``INT8`` and int8 calibrators are
  gone), and it builds the same engine on TensorRT 10. The engine cache key hashes the built graph,
  which for int8 includes the calibration data.

``tensorrt`` is an optional dependency (extra ``[tensorrt]``). It is imported when the backend is created,
and its absence raises a RuntimeError that says what to do (see engine/backends/__init__.py).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.backends.base import FusionBackend, FusionInputs, FusionResult, softmax
from engine.backends.cache import atomic_write_bytes, code_digest, default_cache_dir, file_digest, text_digest
from engine.backends.graphs import PRECISIONS, precision_graph
from engine.backends.onnxruntime_backend import cached_graph

DYNAMO = "dynamo"  # the exporter of the graphs TensorRT builds from (models.export.EXPORTERS)


def _import_tensorrt():  # noqa: ANN202
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise ModuleNotFoundError(
            f"tensorrt is not importable ({e}); install TensorRT for your CUDA version "
            "(pip install '.[tensorrt]' with NVIDIA's index, or JetPack on Jetson)") from e
    return trt


def tensorrt_status() -> dict[str, Any]:
    """What this machine offers for TensorRT: import, version, CUDA device. Never raises."""
    status: dict[str, Any] = {"cuda": torch.cuda.is_available()}
    if status["cuda"]:
        status["gpu"] = torch.cuda.get_device_name(0)
        status["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    try:
        trt = _import_tensorrt()
        status["tensorrt"] = trt.__version__
    except ModuleNotFoundError as e:
        status["tensorrt"] = None
        status["reason"] = str(e)
    return status


@dataclass
class ProfileShapes:
    """min/opt/max of the dynamic dimensions (batch and each modality's length)."""

    batch: tuple[int, int, int] = (1, 1, 64)
    text: tuple[int, int, int] = (1, 32, 512)
    audio: tuple[int, int, int] = (1, 300, 3000)
    video: tuple[int, int, int] = (1, 90, 900)

    def __post_init__(self) -> None:
        for name in ("batch", "text", "audio", "video"):
            lo, opt, hi = getattr(self, name)
            if not 1 <= lo <= opt <= hi:
                raise ValueError(f"profile {name} must satisfy 1 <= min <= opt <= max, got {(lo, opt, hi)}")


class GraphCache:
    """Captured CUDA graphs by input-shape key, at most ``capacity``, least recently used evicted."""

    def __init__(self, capacity: int = 16) -> None:
        if capacity < 1:
            raise ValueError(f"max_graphs must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self.evicted = 0

    def get(self, key: Any) -> Any | None:
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: Any, value: Any) -> list[Any]:
        """Store ``value``; returns what was evicted (the caller frees it)."""
        self._items[key] = value
        self._items.move_to_end(key)
        out = []
        while len(self._items) > self.capacity:
            out.append(self._items.popitem(last=False)[1])
            self.evicted += 1
        return out

    def __len__(self) -> int:
        return len(self._items)


def engine_name(
    onnx_path: str | Path,
    gpu: Any,
    trt_version: str,
    precision: str,
    shapes: ProfileShapes,
    calibration_npz: str | Path | None = None,
    workspace_mb: int = 1024,
    build: str | None = None,
) -> str:
    """The cache file stem of an engine. Everything that changes the built engine is hashed into it: the
    bytes of the graph it is built from (``onnx_path``: for int8 the Q/DQ graph, whose scales come from
    the calibration data), the GPU (``gpu``: CUDA device properties, name and compute capability),
    TensorRT's version, the precision, the optimization profile, the workspace, the build code's version
    (``build``, default ``build_version()``) and, for int8, the calibration data itself."""
    ident = {"onnx": file_digest(onnx_path), "gpu": gpu.name, "cc": f"{gpu.major}.{gpu.minor}",
             "trt": trt_version, "precision": precision, "profile": shapes.__dict__,
             "workspace_mb": int(workspace_mb), "build": build_version() if build is None else build}
    if precision == "int8" and calibration_npz:
        ident["calibration"] = file_digest(calibration_npz)
    return f"fusion-{precision}-{text_digest(json.dumps(ident, sort_keys=True))}"


def build_version() -> str:
    """The version of the code that builds an engine from a graph (``TensorRTBackend._build`` and the
    network flags): an edit to it builds the engines again; an edit elsewhere in this file does not."""
    return code_digest(TensorRTBackend._build, network_flags)


def save_build(engine_path: Path, engine: bytes, timing_path: Path, timing: bytes) -> None:
    """Write a built engine and the timing cache, each atomically (a unique temporary file renamed over
    the final one): another process building at the same time, or a build interrupted while writing,
    leaves no partial engine or timing cache."""
    atomic_write_bytes(engine_path, engine)
    atomic_write_bytes(timing_path, timing)


def network_flags(trt: Any) -> int:
    """Creation flags of a strongly typed network: required on TensorRT 10, accepted and ignored on 11
    (always strongly typed)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if flag is None:
        raise RuntimeError(
            f"TensorRT {trt.__version__} cannot build strongly typed networks; TensorRT >= 10 is needed"
        )
    return 1 << int(flag)


class TensorRTBackend(FusionBackend):
    name = "tensorrt"

    def __init__(self, model: torch.nn.Module | None, model_id: str, device: str = "cuda",
                 precision: str = "fp16", profile: dict[str, Any] | ProfileShapes | None = None,
                 cache_dir: str | None = None, onnx_path: str | Path | None = None, cuda_graphs: bool = True,
                 workspace_mb: int = 1024, calibration_npz: str | None = None,
                 max_graphs: int = 16) -> None:
        super().__init__(model_id)
        try:
            trt = _import_tensorrt()
        except ModuleNotFoundError as e:
            raise RuntimeError(f"the tensorrt backend is not available here: {e}; "
                               "use --backend onnxruntime or torch instead") from e
        if not torch.cuda.is_available():
            raise RuntimeError(
                "tensorrt backend needs a CUDA GPU; none is visible (use onnxruntime or torch)"
            )
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.trt = trt
        self.precision = precision
        self.device = torch.device(device if device.startswith("cuda") else "cuda")
        self.shapes = profile if isinstance(profile, ProfileShapes) else ProfileShapes(**(profile or {}))
        if onnx_path is None:
            if model is None:
                raise ValueError("tensorrt backend needs a model to export or an onnx_path")
            # torch.export's graph: the fp16 converter mistypes parts of the TorchScript trace
            onnx_path = cached_graph(model, model_id, exporter=DYNAMO)
        if precision == "int8" and not calibration_npz:
            raise ValueError(
                "int8 needs calibration_npz: a .npz of real fusion inputs (python -m engine.calibrate)"
            )
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir("tensorrt")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.calibration_npz = calibration_npz if precision == "int8" else None
        # The graph in this precision (the export itself for fp32), made once and cached.
        self.onnx_path = precision_graph(precision, onnx_path, self.cache_dir, self.calibration_npz, model_id)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.workspace_mb = int(workspace_mb)
        self.engine_path = self.cache_dir / f"{self.cache_key()}.engine"
        self.built_now = False
        if not self.engine_path.is_file():
            self._build(self.workspace_mb)
            self.built_now = True
        runtime = trt.Runtime(self.logger)
        self.engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {self.engine_path}; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device=self.device)
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in self.names if n not in self.inputs]
        self.cuda_graphs = cuda_graphs
        self._graphs = GraphCache(max_graphs)  # shape key -> (CUDAGraph, its buffers)

    # ---------------------------------------------------------------------------------------------- build
    def cache_key(self) -> str:
        props = torch.cuda.get_device_properties(self.device)
        return engine_name(
            self.onnx_path, props, self.trt.__version__, self.precision, self.shapes, self.calibration_npz,
            self.workspace_mb,
        )

    def _build(self, workspace_mb: int) -> None:
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(network_flags(trt))
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(self.onnx_path.read_bytes()):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {self.onnx_path.name}: {errs}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        timing_path = self.cache_dir / "timing.cache"
        cache = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        prof = builder.create_optimization_profile()
        b = self.shapes.batch
        for i in range(network.num_inputs):
            t = network.get_input(i)
            name = t.name
            if name == "avail":
                prof.set_shape(name, (b[0], 3), (b[1], 3), (b[2], 3))
                continue
            mod = name.removesuffix("_mask")
            ln = getattr(self.shapes, mod)
            if name.endswith("_mask"):
                prof.set_shape(name, (b[0], ln[0]), (b[1], ln[1]), (b[2], ln[2]))
            else:
                d = t.shape[2]
                prof.set_shape(name, (b[0], ln[0], d), (b[1], ln[1], d), (b[2], ln[2], d))
        config.add_optimization_profile(prof)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise RuntimeError("TensorRT engine build failed (see the TensorRT log above)")
        timing = bytes(config.get_timing_cache().serialize())
        save_build(self.engine_path, bytes(serialized), timing_path, timing)

    # ---------------------------------------------------------------------------------------------- run
    def _torch_dtype(self, name: str) -> torch.dtype:
        dt = self.engine.get_tensor_dtype(name)
        t = self.trt.DataType
        return {t.FLOAT: torch.float32, t.HALF: torch.float16, t.BOOL: torch.bool, t.INT32: torch.int32,
                t.INT64: torch.int64}[dt]

    def _bind(self, feed: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        bufs: dict[str, torch.Tensor] = {}
        for n in self.inputs:
            x = torch.from_numpy(np.ascontiguousarray(feed[n]))
            x = x.to(self.device, self._torch_dtype(n), non_blocking=True)
            self.context.set_input_shape(n, tuple(x.shape))
            bufs[n] = x
        for n in self.outputs:
            shape = tuple(self.context.get_tensor_shape(n))
            bufs[n] = torch.empty(shape, dtype=self._torch_dtype(n), device=self.device)
        for n, t in bufs.items():
            self.context.set_tensor_address(n, int(t.data_ptr()))
        return bufs

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    def infer(self, inputs: FusionInputs) -> FusionResult:
        feed = inputs.feed()
        key = tuple((n, feed[n].shape) for n in self.inputs)
        with torch.cuda.stream(self.stream):
            cached = self._graphs.get(key) if self.cuda_graphs else None
            if cached is not None:
                graph, bufs = cached
                for n in self.inputs:  # copy new values into the captured input buffers
                    bufs[n].copy_(torch.from_numpy(np.ascontiguousarray(feed[n])).to(bufs[n].dtype),
                                  non_blocking=True)
                for n, t in bufs.items():
                    self.context.set_tensor_address(n, int(t.data_ptr()))
                for n in self.inputs:
                    self.context.set_input_shape(n, tuple(bufs[n].shape))
                graph.replay()
            else:
                bufs = self._bind(feed)
                self._enqueue()
                if self.cuda_graphs:
                    self.stream.synchronize()
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph, stream=self.stream):
                        self._enqueue()
                    for old_graph, _ in self._graphs.put(key, (graph, bufs)):
                        old_graph.reset()  # frees the graph's memory; its buffers go with the last reference
            logits = bufs["logits"].float().cpu().numpy()  # syncs the stream
        return FusionResult(logits=logits, probs=softmax(logits))

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "precision": self.precision, "engine": self.engine_path.name,
                "tensorrt": self.trt.__version__, "cuda_graphs": str(self.cuda_graphs),
                "max_graphs": str(self._graphs.capacity)}
