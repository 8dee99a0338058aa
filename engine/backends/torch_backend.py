"""Fusion in PyTorch: eager (the reference), ``torch.compile``, or compiled with CUDA graphs; fp32, or
fp16/bf16 on a GPU. It is also the backend that runs CUDA without an export step."""

from __future__ import annotations

import copy

import numpy as np
import torch

from engine.backends.base import FusionBackend, FusionInputs, FusionResult, softmax

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_MODES = ("eager", "compile", "cuda_graphs")


class TorchBackend(FusionBackend):
    name = "torch"

    def __init__(self, model: torch.nn.Module, model_id: str, device: str = "cpu", threads: int | None = None,
                 mode: str = "eager", dtype: str = "fp32") -> None:
        super().__init__(model_id)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"torch backend: device {device!r} requested but CUDA is not available")
        if mode not in _MODES:
            raise ValueError(f"torch backend: mode must be one of {_MODES}, got {mode!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"torch backend: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if dtype != "fp32" and not device.startswith("cuda"):
            raise ValueError(f"torch backend: {dtype} is for GPUs; use fp32 on {device!r}")
        if mode == "cuda_graphs" and not device.startswith("cuda"):
            raise ValueError("torch backend: cuda_graphs mode needs a CUDA device")
        if threads and device == "cpu":
            torch.set_num_threads(int(threads))
        self.device = torch.device(device)
        self.dtype = _DTYPES[dtype]
        self.mode = mode
        first = next(model.parameters(), None)
        if first is not None and (first.device != self.device or first.dtype != self.dtype):
            model = copy.deepcopy(model)  # the caller's model (maybe shared) keeps its device and dtype
        self.model = model.to(self.device, self.dtype).eval()
        if mode == "compile":
            self._run = torch.compile(self.model, dynamic=True)
        elif mode == "cuda_graphs":  # inductor's CUDA-graph trees: one graph per seen shape
            self._run = torch.compile(self.model, mode="reduce-overhead", dynamic=False)
        else:
            self._run = self.model

    @torch.inference_mode()
    def infer(self, inputs: FusionInputs) -> FusionResult:
        f = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in inputs.feed().items()}
        for k in ("text", "audio", "video", "avail"):
            f[k] = f[k].to(self.dtype)
        out = self._run(f["text"], f["text_mask"], f["audio"], f["audio_mask"], f["video"], f["video_mask"],
                        f["avail"])
        logits = out.logits.float().cpu().numpy()
        return FusionResult(logits=logits, probs=softmax(logits))

    def describe(self) -> dict[str, str]:
        return {**super().describe(), "mode": self.mode, "dtype": str(self.dtype).removeprefix("torch.")}
