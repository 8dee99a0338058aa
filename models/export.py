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
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .modalities import CONDITIONS, INPUT_NAMES

DEFAULT_TOLERANCE = 1e-4
log = logging.getLogger("models.export")


class FusionGraph(nn.Module):
    """Inference view of a fusion model: positional inputs in INPUT_NAMES order -> a tuple of tensors."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, text, text_mask, audio, audio_mask, video, video_mask, avail):  # noqa: ANN001
        out = self.model(text, text_mask, audio, audio_mask, video, video_mask, avail)
        return tuple(getattr(out, name) for name in output_names_for(self.model))


def output_names_for(model: nn.Module) -> tuple[str, ...]:
    """The model family's own ``OUTPUT_NAMES`` (fields of its output record); logits always come first.
    CM-ARR: logits, features, mu, var. CIDer: logits, representation."""
    names = getattr(model, "OUTPUT_NAMES", None)
    if not names or names[0] != "logits":
        raise TypeError(f"{type(model).__name__} declares no OUTPUT_NAMES starting with 'logits'; "
                        "a fusion model family lists the output fields its graph returns")
    return tuple(names)


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


EXPORTERS = ("auto", "torchscript", "dynamo")
TRACE_LENGTHS = {"text": 7, "audio": 11, "video": 5}  # the example the graph is traced or exported from


def export_onnx(model: nn.Module, path: str | Path, opset: int = 18, exporter: str = "auto") -> Path:
    """Export ``model`` (eval mode) to ``path`` with dynamic batch and lengths; returns the path.

    ``exporter``: "torchscript" traces the model (about 1 s on 2 cores); "dynamo" exports it through
    ``torch.export`` (about 15 s), which captures shape-dependent code and torch.cond; "auto" traces,
    checks the traced graph against torch (``trace_checks_out``) and exports through dynamo instead when
    the tracer fails or its graph differs (a trace can bake a length or a branch into the graph); a
    dynamo graph that differs too is a ValueError (nothing is left at ``path``).
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    output_names_for(model)  # a model that names no outputs is refused before any exporter runs
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if exporter == "dynamo":
        return _export_dynamo(model, path, opset)
    t0 = time.perf_counter()
    try:
        _export_torchscript(model, path, opset)
        why = "" if exporter == "torchscript" else _differs("the traced graph", trace_checks_out(model, path))
    except Exception as e:  # noqa: BLE001 - any tracer failure (or a torch without it) falls back
        if exporter == "torchscript":
            raise
        why = f"the tracer failed ({_first_line(e)})"
    if not why:
        log.info("exported by torchscript in %.1f s: %s", time.perf_counter() - t0, path)
        return path
    log.warning("%s; exporting through torch.export (slower)", why)
    try:
        _export_dynamo(model, path, opset)
        failed = _differs("torch.export's graph", trace_checks_out(model, path))
    except Exception as e:  # noqa: BLE001 - reported with the tracer's reason below
        failed = f"torch.export failed ({_first_line(e)})"
    if failed:
        path.unlink(missing_ok=True)
        raise ValueError(
            f"{type(model).__name__} cannot be exported to one ONNX graph: {why}, and {failed} "
            "(a Python branch on a tensor's value? write it with torch.where or torch.cond)"
        )
    return path


def _differs(what: str, worst: float) -> str:
    return f"{what} differs from torch by {worst:.3g}" if worst > DEFAULT_TOLERANCE else ""


def _first_line(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def _output_diffs(graph: nn.Module, sess: Any, args: tuple[torch.Tensor, ...]) -> dict[str, float]:
    """Output name -> max |onnxruntime - torch| on ``args`` (inputs the graph does not read are not fed)."""
    used = {i.name for i in sess.get_inputs()}
    with torch.no_grad():
        ref = graph(*args)
    got = sess.run(None, {k: v.numpy() for k, v in zip(INPUT_NAMES, args, strict=True) if k in used})
    names = [o.name for o in sess.get_outputs()]
    return {nm: float(np.max(np.abs(g - r.numpy()))) for nm, g, r in zip(names, got, ref, strict=True)}


def trace_checks_out(model: nn.Module, path: str | Path) -> float:
    """The largest difference between onnxruntime on ``path`` and torch, on inputs unlike the tracing
    example's: each of the seven masks alone (a branch on availability would be baked in), then all
    seven in one ragged batch at lengths 1 and 61 (a baked length or batch size); inf when the graph
    cannot run them. About 0.3 s."""
    import onnxruntime as ort

    graph = FusionGraph(model).eval()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as written
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    dims = _dims(model)
    masks = list(CONDITIONS.values())
    cases = [example_inputs(dims, batch=2, lengths={"text": 3, "audio": 17, "video": 9}, avail=m, seed=i)
             for i, m in enumerate(masks)]
    for seed, (lt, la, lv) in enumerate(((1, 61, 23), (61, 1, 61)), start=len(masks)):
        cases.append(example_inputs(dims, batch=len(masks), lengths={"text": lt, "audio": la, "video": lv},
                                    avail=torch.tensor(masks, dtype=torch.float32), seed=seed))
    worst = 0.0
    for args in cases:
        try:
            worst = max(worst, *_output_diffs(graph, sess, args).values())
        except Exception:  # noqa: BLE001 - a shape baked into the graph: it cannot even run these inputs
            return float("inf")
    return worst


def _export_torchscript(model: nn.Module, path: Path, opset: int) -> None:
    graph = FusionGraph(model).eval()
    args = example_inputs(_dims(model), batch=2, lengths=TRACE_LENGTHS, avail=(1, 1, 1))
    axes: dict[str, dict[int, str]] = {"avail": {0: "batch"}}
    for m in ("text", "audio", "video"):
        axes[m] = axes[f"{m}_mask"] = {0: "batch", 1: f"len_{m}"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation notices; the graph is checked instead
        torch.onnx.export(
            graph, args, str(path), input_names=list(INPUT_NAMES), output_names=list(output_names_for(model)),
            dynamic_axes=axes, opset_version=opset, dynamo=False,
        )


def _export_dynamo(model: nn.Module, path: Path, opset: int) -> Path:
    t0 = time.perf_counter()
    graph = FusionGraph(model).eval()
    args = example_inputs(_dims(model), batch=2, lengths=TRACE_LENGTHS, avail=(1, 1, 1))
    batch = torch.export.Dim("batch", min=1, max=4096)
    dyn: dict[str, dict[int, Any]] = {"avail": {0: batch}}
    for m in ("text", "audio", "video"):
        length = torch.export.Dim(f"len_{m}", min=1, max=100000)
        dyn[m] = dyn[f"{m}_mask"] = {0: batch, 1: length}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph, args, input_names=list(INPUT_NAMES), output_names=list(output_names_for(model)),
            dynamic_shapes={n: dyn[n] for n in INPUT_NAMES}, opset_version=opset, dynamo=True, verbose=False,
        )
        program.save(str(path))
    log.info("exported by dynamo in %.1f s: %s", time.perf_counter() - t0, path)
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
    dims = _dims(model)
    cases = []
    worst = 0.0
    n = len(lengths)
    for (cond, mask), b, shift in itertools.product(CONDITIONS.items(), batches, range(n)):
        lens = {m: lengths[(i + shift) % n] for i, m in enumerate(("text", "audio", "video"))}
        args = example_inputs(dims, batch=b, lengths=lens, avail=mask, seed=shift * 7 + b)
        diffs = _output_diffs(graph, sess, args)
        md = max(diffs.values())
        worst = max(worst, md)
        cases.append(
            {"condition": cond, "batch": b, "lengths": lens, "max_abs_diff": md, "per_output": diffs}
        )
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
    from .config_io import from_dict, load_yaml
    from .families import FAMILIES, family

    data = dict(load_yaml(config_path))
    named = data.pop("model_type", None)  # a model YAML may name its family
    kind = model_type or named or ("cider" if "cider" in Path(config_path).stem else "cmarr")
    if kind not in FAMILIES:
        raise SystemExit(f"unknown --model-type {kind!r}; known: {sorted(FAMILIES)}")
    model_cls, cfg_cls = family(kind)

    torch.manual_seed(seed)
    return model_cls(from_dict(cfg_cls, data, where=config_path)).eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="model YAML (used with --random-init)")
    ap.add_argument("--checkpoint", help="a .safetensors checkpoint (config is read from it)")
    ap.add_argument("--random-init", action="store_true", help="export an untrained model (for tests)")
    from .families import FAMILIES

    ap.add_argument("--model-type", choices=sorted(FAMILIES),
                    help="model family of --config (default: cider when the file name says so, else cmarr)")
    ap.add_argument("--out", required=True, help="output .onnx path")
    ap.add_argument("--opset", type=int, default=18)
    ap.add_argument("--exporter", choices=EXPORTERS, default="auto",
                    help="torchscript (fast trace), dynamo (torch.export) or auto: the trace when it checks "
                         "out against torch, else dynamo (default)")
    ap.add_argument(
        "--verify", action="store_true", help="check onnxruntime against torch; exit 1 on failure"
    )
    ap.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    args = ap.parse_args(argv)
    model = build_model(args.config, args.checkpoint, args.random_init, model_type=args.model_type)
    path = export_onnx(model, args.out, opset=args.opset, exporter=args.exporter)
    report: dict[str, Any] = {"onnx": str(path), "parameters": sum(p.numel() for p in model.parameters())}
    if args.verify:
        report = {**report, **verify_onnx(model, path, tolerance=args.tolerance)}
    print(json.dumps(report, indent=1))
    return 0 if report.get("passed", True) else 1


if __name__ == "__main__":
    sys.exit(main())
