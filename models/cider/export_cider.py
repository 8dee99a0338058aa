"""ONNX export of CIDer with the same graph inputs as CM-ARR.

Inputs: text, text_mask, audio, audio_mask, video, video_mask (masks bool), avail [B, 3] float32.
Outputs: logits [B, C] first, then representation [B, 3d]. Batch and every length are dynamic; the
dynamo exporter is used because the legacy one bakes attention lengths into the graph.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .modeling_cider import CIDer

INPUT_NAMES = ("text", "text_mask", "audio", "audio_mask", "video", "video_mask", "avail")
OUTPUT_NAMES = ("logits", "representation")


def example_inputs(
    model: CIDer, batch: int = 2, lengths: tuple[int, int, int] = (6, 9, 7)
) -> tuple[torch.Tensor, ...]:
    """Random inputs of the given lengths (text, audio, video), all positions valid, all modalities on."""
    c = model.config
    g = torch.Generator().manual_seed(0)
    out: list[torch.Tensor] = []
    for dim, length in zip((c.text_dim, c.audio_dim, c.video_dim), lengths, strict=True):
        out += [torch.randn(batch, length, dim, generator=g), torch.ones(batch, length, dtype=torch.bool)]
    out.append(torch.ones(batch, 3))
    return tuple(out)


def export_cider_onnx(model: CIDer, path: str | Path, opset: int = 18) -> Path:
    """Export ``model`` (in eval mode) to one ONNX graph at ``path``; returns the path.

    The same exporter as CM-ARR (models.export.export_onnx): identical input names, dynamic batch and
    lengths; CIDer's outputs are logits then representation.
    """
    from ..export import export_onnx

    return export_onnx(model, path, opset=opset)
