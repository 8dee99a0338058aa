"""Fusion in eager PyTorch (reference backend; also the one that runs CUDA without an export step)."""

from __future__ import annotations

import numpy as np
import torch

from .base import FusionBackend, FusionInputs, FusionResult, softmax


class TorchBackend(FusionBackend):
    name = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        model_id: str,
        device: str = "cpu",
        threads: int | None = None,
        **_: object,
    ) -> None:
        super().__init__(model_id)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"torch backend: device {device!r} requested but CUDA is not available")
        if threads and device == "cpu":
            torch.set_num_threads(int(threads))
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @torch.inference_mode()
    def infer(self, inputs: FusionInputs) -> FusionResult:
        f = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in inputs.feed().items()}
        out = self.model(
            f["text"], f["text_mask"], f["audio"], f["audio_mask"], f["video"], f["video_mask"], f["avail"]
        )
        logits = out.logits.float().cpu().numpy()
        return FusionResult(logits=logits, probs=softmax(logits))
