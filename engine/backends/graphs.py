"""The fusion graph in each precision, as ONNX: fp32 (the export), fp16 and int8 (explicit Q/DQ).

TensorRT 11 builds strongly typed networks only: the precision of every layer comes from the ONNX graph,
not from builder flags (``BuilderFlag.FP16`` / ``INT8`` and the int8 calibrator are gone). So the
precision is decided here, once, before any engine is built, and the same graphs serve TensorRT 10:

* **fp16**: onnxconverter-common's float16 conversion, with fp32 inputs and outputs and the numerically
  delicate ops (exponentials, sums, normalisation, recurrences) kept in fp32 (``FP32_OPS``).
* **int8**: onnxruntime's static quantization in QDQ form, as TensorRT reads it: symmetric int8
  activations (per tensor) and weights (per channel, in [-127, 127]), float biases, on the matrix
  products (``INT8_OPS``), with activation ranges calibrated on real fusion inputs that
  ``python -m engine.calibrate`` records.

Both graphs are ONNX, so onnxruntime on a CPU runs them too: that is how the tests check them against
fp32 on machines without a GPU. A converted graph is cached beside its engine, keyed by the bytes of the
source graph, the version of the conversion code (``conversion_version``) and, for int8, the calibration
data (``converted_name``); it is written atomically (``engine/backends/cache.py``).

Calibration data: an ``.npz`` with the padded fusion inputs (``text``, ``text_mask``, ..., ``avail``) of
N windows, plus ``model_id``: the inputs are normalised with the model's own feature statistics, so
they calibrate that model only.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from engine.backends.base import FusionInputs
from engine.backends.cache import atomic_write, file_digest, sources_digest, text_digest
from models.modalities import INPUT_NAMES, MODALITIES

PRECISIONS = ("fp32", "fp16", "int8")
# Kept in fp32 in the fp16 graph: overflow or cancellation in half precision (flows' exp, attention
# sums, normalisation statistics, GRU state).
FP32_OPS = (
    "Exp",
    "Log",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "ReduceL2",
    "ReduceProd",
    "CumSum",
    "Softmax",
    "LayerNormalization",
    "GRU",
    "Erf",
    "Range",
    "Sin",
    "Cos",
)
# Quantized in the int8 graph; the rest stays fp32.
INT8_OPS = ("MatMul", "Gemm", "Conv")
# "minmax": each activation's full recorded range (the default: on recorded windows it kept as many
# top-1 labels as percentile clipping did, and it works on any data); "percentile": ranges clipped at
# the 99.999th percentile of a 2048-bin histogram (onnxruntime cannot histogram a tensor whose recorded
# values are all nearly equal, e.g. a modality that is always dropped). onnxruntime's entropy calibrator
# is left out: with its default 128 histogram bins and 128 quantized bins it returns the min-max ranges.
CALIBRATION_METHODS = ("minmax", "percentile")

log = logging.getLogger("engine")


# --------------------------------------------------------------------------------------------------
# calibration data
# --------------------------------------------------------------------------------------------------
def with_dropped_modalities(samples: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Each sample under every non-empty subset of its available modalities, the others dropped as the
    engine drops them (no rows, availability 0): the graph serves all seven masks, so its ranges are
    calibrated on the reconstruction paths too."""
    out = []
    for s in samples:
        present = [i for i, m in enumerate(MODALITIES) if s["avail"][i] > 0 and len(s[m])]
        for k in range(len(present), 0, -1):
            for keep in itertools.combinations(present, k):
                v = {"avail": np.zeros(3, np.float32)}
                for i, m in enumerate(MODALITIES):
                    v[m] = (
                        np.asarray(s[m], np.float32)
                        if i in keep
                        else np.zeros((0, s[m].shape[-1]), np.float32)
                    )
                    v["avail"][i] = 1.0 if i in keep else 0.0
                out.append(v)
    return out


def save_calibration(
    samples: Sequence[Mapping[str, np.ndarray]], path: str | Path, model_id: str, dims: Mapping[str, int]
) -> Path:
    """Pad ``samples`` (modality -> [L, D], "avail" -> [3]) into one batch and write it with the model id."""
    if not samples:
        raise ValueError("no fusion windows were recorded: nothing to calibrate on")
    batch = FusionInputs.from_samples([dict(s) for s in samples], dict(dims))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: numpy adds no ".npz" to the name
            np.savez_compressed(f, model_id=np.array(model_id), **batch.feed())

    return atomic_write(path, write)


def load_calibration(path: str | Path, model_id: str | None = None) -> dict[str, np.ndarray]:
    """The fusion inputs of a calibration file, checked: every input present, one sample count, and (when
    ``model_id`` is given) recorded for that model. Raises ValueError with what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"calibration file {path} does not exist; record one with python -m engine.calibrate"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"calibration file {path} is not a readable .npz: {e}") from None
    missing = [k for k in (*INPUT_NAMES, "model_id") if k not in data]
    if missing:
        raise ValueError(
            f"calibration file {path} lacks {missing}; record one with python -m engine.calibrate"
        )
    counts = {k: int(data[k].shape[0]) for k in INPUT_NAMES}
    if len(set(counts.values())) != 1 or counts["avail"] == 0:
        raise ValueError(f"calibration file {path}: inconsistent or empty sample counts {counts}")
    recorded = str(data["model_id"])
    if model_id is not None and recorded != model_id:
        raise ValueError(
            f"calibration file {path} was recorded for model {recorded[:16]}, not for this model "
            f"({model_id[:16]}): the inputs are normalised per model; record it again with "
            "python -m engine.calibrate"
        )
    return {k: data[k] for k in INPUT_NAMES}


def calibration_batches(data: Mapping[str, np.ndarray], batch: int) -> list[dict[str, np.ndarray]]:
    """Equal-sized calibration batches of ``batch`` samples (fewer when the data holds fewer samples than
    one batch: then one batch of all of them). Raises a clear ValueError when there is nothing to use."""
    if "avail" not in data:
        raise ValueError(f"calibration data needs the fusion inputs (avail, text, ...); got {sorted(data)}")
    n = int(data["avail"].shape[0])
    if n == 0:
        raise ValueError("calibration data holds no samples")
    bs = max(1, min(int(batch), n))
    return [{k: np.asarray(data[k][i : i + bs]) for k in data} for i in range(0, n - bs + 1, bs)]


# --------------------------------------------------------------------------------------------------
# converted graphs
# --------------------------------------------------------------------------------------------------
def conversion_version(precision: str) -> str:
    """The version of the code that converts the fp32 graph to ``precision``: this file's source and the
    versions of onnx and of the converter (onnxconverter-common for fp16, onnxruntime's quantizer for
    int8). An edit or an upgrade changes it, so the graph is converted again."""
    import importlib.metadata as md

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "absent"

    converter = {"fp16": "onnxconverter-common", "int8": "onnxruntime"}[precision]
    versions = (f"onnx={version('onnx')}", f"{converter}={version(converter)}")
    return sources_digest([__file__], precision, *versions)


def converted_name(
    src: str | Path,
    precision: str,
    calibration_npz: str | Path | None = None,
    method: str = "minmax",
    version: str | None = None,
) -> str:
    """The cache file name of ``src`` converted to ``precision`` (fp16, int8): the source graph's bytes,
    the conversion code's version and, for int8, the calibration method and data are hashed into it."""
    src = Path(src)
    version = conversion_version(precision) if version is None else version
    parts = [file_digest(src), version]
    if precision == "int8":
        if calibration_npz is None:
            raise ValueError("an int8 graph is keyed by its calibration data: pass calibration_npz")
        parts += [method, file_digest(calibration_npz)]
    tag = f"int8-{method}" if precision == "int8" else precision
    return f"{src.stem}-{tag}-{text_digest(*parts)}.onnx"


def _save_onnx(model: object, path: Path) -> Path:
    import onnx

    return atomic_write(path, lambda tmp: onnx.save(model, str(tmp)))


def fp16_graph(onnx_path: str | Path, out_dir: str | Path) -> Path:
    """The fp16 graph of ``onnx_path`` (fp32 inputs and outputs; ``FP32_OPS`` stay fp32), cached."""
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError as e:
        raise RuntimeError(
            f"fp16 conversion needs onnxconverter-common ({e}); pip install '.[tensorrt]'"
        ) from e
    src = Path(onnx_path)
    out = Path(out_dir) / converted_name(src, "fp16")
    if out.is_file():
        return out
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS))
    model = logits_only(onnx.load(str(src)))
    with warnings.catch_warnings():  # one line per constant clipped to the fp16 range
        warnings.filterwarnings("ignore", message="the float32 number", category=UserWarning)
        model = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    _retype_float_casts(model)
    return _save_onnx(model, out)


def logits_only(model: object) -> object:
    """The graph with ``logits`` as its only output (the backends read nothing else). The export also
    returns intermediate tensors that later nodes consume, and the converter mistypes such outputs."""
    keep = [o for o in model.graph.output if o.name == "logits"]
    if not keep:
        raise ValueError("the fusion graph has no 'logits' output")
    del model.graph.output[:]
    model.graph.output.extend(keep)
    return model


def _retype_float_casts(model: object) -> int:
    """Make the graph's own casts to fp32 (e.g. bool masks to float) cast to fp16 where the converter
    typed their output fp16. The converter re-types every float tensor but leaves a Cast's ``to``
    attribute alone, so such a Cast would feed fp32 into fp16 arithmetic (a type error at load); the
    blocked consumers of its output already get their own cast back to fp32. Returns how many changed."""
    from onnx import TensorProto

    fp16_tensors = {
        v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == TensorProto.FLOAT16
    }
    changed = 0
    for node in model.graph.node:
        if node.op_type == "Cast" and node.output[0] in fp16_tensors:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
                    changed += 1
    return changed


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over calibration batches."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def int8_graph(
    onnx_path: str | Path,
    calibration_npz: str | Path,
    out_dir: str | Path,
    model_id: str | None = None,
    batch: int = 8,
    method: str = "minmax",
) -> Path:
    """The int8 QDQ graph of ``onnx_path`` with activation ranges from ``calibration_npz``, cached by both."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}")
    data = load_calibration(calibration_npz, model_id)
    src = Path(onnx_path)
    out = Path(out_dir) / converted_name(src, "int8", calibration_npz, method)
    if out.is_file():
        return out
    n = int(data["avail"].shape[0])
    log.warning("calibrating the int8 fusion graph on %d windows (%s)", n, method)
    try:
        return atomic_write(out, lambda tmp: _quantize(src, tmp, data, batch, method))
    except ValueError as e:  # e.g. a histogram over a constant tensor
        raise ValueError(f"int8 calibration ({method}) failed on {calibration_npz}: {e}") from None


class _DropAdvice(logging.Filter):
    """onnxruntime's quantizer advises running its pre-processing (shape inference and onnxruntime graph
    fusions); the fusions would put onnxruntime-only ops into a graph that TensorRT must parse."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _quantize(src: Path, tmp: Path, data: dict[str, np.ndarray], batch: int, method: str) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    advice = _DropAdvice()
    logging.getLogger().addFilter(advice)
    try:
        quantize_static(
            str(src),
            str(tmp),
            _Reader(calibration_batches(data, batch)),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=list(INT8_OPS),
            calibrate_method={"percentile": CalibrationMethod.Percentile, "minmax": CalibrationMethod.MinMax}[
                method
            ],
            # TensorRT's explicit quantization: zero points 0, int8 weights in [-127, 127], and no int32
            # bias (its dequantize layers take 8-bit and smaller inputs only): biases stay float.
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        )
    finally:
        logging.getLogger().removeFilter(advice)


def precision_graph(
    precision: str,
    onnx_path: str | Path,
    out_dir: str | Path,
    calibration_npz: str | Path | None = None,
    model_id: str | None = None,
) -> Path:
    """The graph to build for ``precision``: the export itself for fp32, else its converted copy."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return Path(onnx_path)
    if precision == "fp16":
        return fp16_graph(onnx_path, out_dir)
    if not calibration_npz:
        raise ValueError("int8 needs calibration data: an .npz recorded with python -m engine.calibrate")
    return int8_graph(onnx_path, calibration_npz, out_dir, model_id)
