"""ONNX export of a fusion model as ONE graph serving all seven availability conditions.

    python -m models.export --config configs/model/cmarr.yaml [--checkpoint PATH | --random-init] \
        --out model.onnx --verify

Inputs (batch and every length dynamic): text [B, Lt, Dt], text_mask [B, Lt] bool, audio [B, La, Da],
audio_mask [B, La] bool, video [B, Lv, Dv], video_mask [B, Lv] bool, avail [B, 3] float32 (text, audio,
video). Outputs: logits [B, C], features [B, 3, K, d], mu [B, 3, g], var [B, 3, g].

``--verify`` runs the graph in onnxruntime against torch for all 7 masks, at several lengths per
modality (including 1) and at batch 1 and 4, prints JSON with the max absolute difference per case, and
exits non-zero when any difference exceeds the tolerance (1e-4).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .modalities import CONDITIONS

INPUT_NAMES = ("text", "text_mask", "audio", "audio_mask", "video", "video_mask", "avail")
OUTPUT_NAMES = ("logits", "features", "mu", "var")
DEFAULT_TOLERANCE = 1e-4


class FusionGraph(nn.Module):
    """Inference view of a fusion model: positional inputs in INPUT_NAMES order -> a tuple of tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, text, text_mask, audio, audio_mask, video, video_mask, avail):  # noqa: ANN001
        out = self.model(text, text_mask, audio, audio_mask, video, video_mask, avail)
        if hasattr(out, "features"):  # CM-ARR
            return out.logits, out.features, out.mu, out.var
        return out.logits, out.representation  # CIDer


def output_names_for(model: nn.Module) -> tuple[str, ...]:
    """CM-ARR: logits, features, mu, var. CIDer: logits, representation. Logits always come first."""
    return OUTPUT_NAMES if model.__class__.__name__ == "CMARR" else ("logits", "representation")


def example_inputs(dims: dict[str, int], batch: int, lengths: dict[str, int], avail: Any,
                   seed: int = 0, ragged: bool = True) -> tuple[torch.Tensor, ...]:
    """Random padded inputs. With ``ragged`` every sample after the first is shorter (padding exercised)."""
    g = torch.Generator().manual_seed(seed)
    out: list[torch.Tensor] = []
    for m in ("text", "audio", "video"):
        length = lengths[m]
        x = torch.randn(batch, length, dims[m], generator=g)
        mask = torch.ones(batch, length, dtype=torch.bool)
        if ragged:
            for b in range(1, batch):
                valid = max(1, length - b * max(1, length // 4))
                mask[b, valid:] = False
        out += [x, mask]
    a = torch.as_tensor(avail, dtype=torch.float32)
    if a.dim() == 1:
        a = a.unsqueeze(0).expand(batch, 3).contiguous()
    out.append(a)
    return tuple(out)


def _dims(model: nn.Module) -> dict[str, int]:
    c = model.config  # type: ignore[attr-defined]
    return {"text": c.text_dim, "audio": c.audio_dim, "video": c.video_dim}


def export_onnx(model: nn.Module, path: str | Path, opset: int = 18) -> Path:
    """Export ``model`` (eval mode) to ``path`` with dynamic batch and lengths; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    graph = FusionGraph(model).eval()
    dims = _dims(model)
    args = example_inputs(dims, batch=2, lengths={"text": 7, "audio": 11, "video": 5}, avail=(1, 1, 1))
    batch = torch.export.Dim("batch", min=1, max=4096)
    dyn = {
        "text": {0: batch, 1: torch.export.Dim("len_text", min=1, max=100000)},
        "text_mask": {0: batch, 1: torch.export.Dim("len_text", min=1, max=100000)},
        "audio": {0: batch, 1: torch.export.Dim("len_audio", min=1, max=100000)},
        "audio_mask": {0: batch, 1: torch.export.Dim("len_audio", min=1, max=100000)},
        "video": {0: batch, 1: torch.export.Dim("len_video", min=1, max=100000)},
        "video_mask": {0: batch, 1: torch.export.Dim("len_video", min=1, max=100000)},
        "avail": {0: batch},
    }
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph, args, input_names=list(INPUT_NAMES), output_names=list(output_names_for(model)),
            dynamic_shapes=dyn, opset_version=opset, dynamo=True, verbose=False,
        )
        program.save(str(path))
    return path


def verify_onnx(model: nn.Module, path: str | Path, tolerance: float = DEFAULT_TOLERANCE,
                lengths: tuple[int, ...] = (1, 6, 37), batches: tuple[int, ...] = (1, 4)) -> dict[str, Any]:
    """Compare onnxruntime with torch over 7 masks x lengths x batches; returns a JSON-able report.

    Lengths: every modality takes each value in ``lengths`` (modalities rotated so that, in one case,
    text, audio and video have three different lengths).
    """
    import onnxruntime as ort

    model = model.eval()
    graph = FusionGraph(model).eval()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    dims = _dims(model)
    cases = []
    worst = 0.0
    n = len(lengths)
    for (cond, mask), b, shift in itertools.product(CONDITIONS.items(), batches, range(n)):
        lens = {m: lengths[(i + shift) % n] for i, m in enumerate(("text", "audio", "video"))}
        args = example_inputs(dims, batch=b, lengths=lens, avail=mask, seed=shift * 7 + b)
        with torch.no_grad():
            ref = graph(*args)
        feed = {k: v.numpy() for k, v in zip(INPUT_NAMES, args, strict=True)}
        got = sess.run(names, feed)
        diffs = {nm: float(np.max(np.abs(g - r.numpy()))) for nm, g, r in zip(names, got, ref, strict=True)}
        md = max(diffs.values())
        worst = max(worst, md)
        cases.append({"condition": cond, "batch": b, "lengths": lens, "max_abs_diff": md, "per_output": diffs})
    return {"onnx": str(path), "tolerance": tolerance, "cases": len(cases), "max_abs_diff": worst,
            "passed": worst <= tolerance, "results": cases}


def build_model(config_path: str | None, checkpoint: str | None, random_init: bool, seed: int = 0,
                model_type: str | None = None) -> nn.Module:
    if checkpoint:
        from .checkpoint import load_checkpoint

        return load_checkpoint(checkpoint).model
    if not random_init:
        raise SystemExit("no --checkpoint given: pass one, or --random-init to export an untrained model")
    if not config_path:
        raise SystemExit("--random-init needs --config")
    from .checkpoint import _registry
    from .config_io import load_yaml

    data = dict(load_yaml(config_path))
    named = data.pop("model_type", None)  # a model YAML may name its family
    kind = model_type or named or ("cider" if "cider" in Path(config_path).stem else "cmarr")
    if kind not in _registry():
        raise SystemExit(f"unknown --model-type {kind!r}; known: {sorted(_registry())}")
    model_cls, cfg_cls = _registry()[kind]
    from .config_io import from_dict

    torch.manual_seed(seed)
    return model_cls(from_dict(cfg_cls, data, where=config_path)).eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="model YAML (used with --random-init)")
    ap.add_argument("--checkpoint", help="a .safetensors checkpoint (config is read from it)")
    ap.add_argument("--random-init", action="store_true", help="export an untrained model (for tests)")
    ap.add_argument("--model-type", choices=("cmarr", "cider"),
                    help="model family of --config (default: cider when the file name says so, else cmarr)")
    ap.add_argument("--out", required=True, help="output .onnx path")
    ap.add_argument("--opset", type=int, default=18)
    ap.add_argument("--verify", action="store_true", help="check onnxruntime against torch; exit 1 on failure")
    ap.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    args = ap.parse_args(argv)
    model = build_model(args.config, args.checkpoint, args.random_init, model_type=args.model_type)
    path = export_onnx(model, args.out, opset=args.opset)
    report: dict[str, Any] = {"onnx": str(path), "parameters": sum(p.numel() for p in model.parameters())}
    if args.verify:
        report = {**report, **verify_onnx(model, path, tolerance=args.tolerance)}
    print(json.dumps(report, indent=1))
    return 0 if report.get("passed", True) else 1


if __name__ == "__main__":
    sys.exit(main())
