"""GPU training throughput of CM-ARR on IEMOCAP-shaped synthetic tensors: the paper's batch 16 in fp32
versus a larger batch with AMP (bf16 autocast), in samples per second.

    python -m benchmarks.train_throughput --json out/train_throughput.json [--large-batch 128] [--steps 50]

Shapes follow the paper's extractors on IEMOCAP utterances (about 4.5 s on average): text 768-d x 32
tokens, audio 768-d x 225 frames (wav2vec2, 50 fps), video 342-d x 135 frames (DenseFace, 30 fps),
with per-sample lengths drawn between half and all of those, and per-sample missing conditions as in
training. One step = forward + CM-ARR loss + backward + clipping + AdamW. Without CUDA it prints
``{"skipped": true, "reason": ...}`` and exits 0: CPU numbers would say nothing about GPU training.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from models.cmarr import CMARR, CMARRConfig, cmarr_loss
from training.data.conditions import ConditionSampler, MissingConfig

REPO = Path(__file__).resolve().parents[1]
SHAPES = {"text": (32, 768), "audio": (225, 768), "video": (135, 342)}


def synthetic_batch(batch: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for m, (length, dim) in SHAPES.items():
        lengths = torch.randint(length // 2, length + 1, (batch,), generator=g)
        out[m] = torch.randn(batch, length, dim, generator=g).to(device)
        out[f"{m}_mask"] = (torch.arange(length).view(1, -1) < lengths.view(-1, 1)).to(device)
    out["present"] = torch.ones(batch, 3, device=device)
    out["label"] = torch.randint(0, 4, (batch,), generator=g).to(device)
    return out


def measure(batch_size: int, amp: bool, steps: int, warmup: int, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    model = CMARR(CMARRConfig()).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    sampler = ConditionSampler(MissingConfig(mode="uniform"), seed=0)
    batches = [synthetic_batch(batch_size, device, seed=i) for i in range(4)]

    def step(b: dict[str, torch.Tensor]) -> None:
        avail = sampler.sample(b["present"])
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            out = model(
                b["text"],
                b["text_mask"],
                b["audio"],
                b["audio_mask"],
                b["video"],
                b["video_mask"],
                avail,
                b["present"],
            )
            loss = cmarr_loss(model, out, b["label"])["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for i in range(warmup):
        step(batches[i % len(batches)])
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    torch.cuda.synchronize(device)
    secs = time.perf_counter() - t0
    return {
        "batch_size": batch_size,
        "precision": "bf16 autocast" if amp else "fp32",
        "steps": steps,
        "seconds": round(secs, 4),
        "samples_per_second": round(batch_size * steps / secs, 1),
        "ms_per_step": round(1000 * secs / steps, 3),
        "peak_memory_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.train_throughput", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--json", default=None)
    ap.add_argument("--large-batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        result: dict[str, Any] = {
            "skipped": True,
            "reason": "no CUDA device: this benchmark measures GPU training "
            "throughput and has no meaningful CPU version",
        }
    else:
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
        torch.backends.cudnn.allow_tf32 = False
        base = measure(16, False, args.steps, args.warmup, device)
        large = measure(args.large_batch, True, args.steps, args.warmup, device)
        result = {
            "skipped": False,
            "device": torch.cuda.get_device_name(device),
            "torch": torch.__version__,
            "shapes": {m: {"max_len": s[0], "dim": s[1]} for m, s in SHAPES.items()},
            "paper_batch16_fp32": base,
            f"batch{args.large_batch}_amp": large,
            "speedup_samples_per_second": round(large["samples_per_second"] / base["samples_per_second"], 2),
        }
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
