"""CIDer's MCT attention: the seven subset softmaxes computed directly against the factorised form that
the model uses (``models.cider.modeling_cider.subset_contexts``), forward + backward, same inputs.

    python -m benchmarks.cider_mct [--lengths 12,40,100] [--batch 32] [--iters 20] [--threads 2] [--json OUT]

Prints JSON: per text length L (3L tokens), the median milliseconds of each form and the ratio
direct / factorised, measured alternately in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.report import emit
from models.cider.modeling_cider import SUBSETS, masked_softmax, subset_contexts


def direct(
    scores: torch.Tensor, v: torch.Tensor, key_ok: torch.Tensor, mod: torch.Tensor
) -> list[torch.Tensor]:
    """The seven masked softmaxes over all 3L keys, one per subset (the form before factorising)."""
    out = []
    for sub in SUBSETS:
        in_sub = torch.zeros_like(mod, dtype=torch.bool)
        for m in sub:
            in_sub = in_sub | (mod == m)
        allowed = key_ok[:, None, None, :] & in_sub[None, None, None, :] & in_sub[None, None, :, None]
        out.append(torch.matmul(masked_softmax(scores, allowed), v))
    return out


def time_once(
    fn: Any, scores: torch.Tensor, v: torch.Tensor, key_ok: torch.Tensor, mod: torch.Tensor
) -> float:
    s, vv = scores.detach().requires_grad_(True), v.detach().requires_grad_(True)
    t0 = time.perf_counter()
    loss = sum(c.square().mean() for c in fn(s, vv, key_ok, mod))
    loss.backward()
    return (time.perf_counter() - t0) * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cider_mct", description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="12,40,100")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=8)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    drop = nn.Identity()
    rows = []
    for length in (int(x) for x in args.lengths.split(",")):
        g = torch.Generator().manual_seed(0)
        n = 3 * length
        scores = torch.randn(args.batch, args.heads, n, n, generator=g)
        v = torch.randn(args.batch, args.heads, n, args.head_dim, generator=g)
        key_ok = torch.rand(args.batch, n, generator=g) > 0.2
        mod = torch.cat([torch.full((length,), m) for m in range(3)])
        forms = {"direct": direct, "factorised": lambda s, vv, k, m: subset_contexts(s, vv, k, m, drop)}
        times: dict[str, list[float]] = {k: [] for k in forms}
        for i in range(args.iters + 2):
            for name, fn in forms.items():
                t = time_once(fn, scores, v, key_ok, mod)
                if i >= 2:  # warm-up
                    times[name].append(t)
        med = {k: statistics.median(t) for k, t in times.items()}
        rows.append(
            {
                "text_len": length,
                "tokens": n,
                "ms_direct": med["direct"],
                "ms_factorised": med["factorised"],
                "ratio_direct_over_factorised": med["direct"] / med["factorised"],
            }
        )
    emit(
        {
            "benchmark": "cider_mct",
            "batch": args.batch,
            "heads": args.heads,
            "head_dim": args.head_dim,
            "iters": args.iters,
            "threads": args.threads,
            "torch": torch.__version__,
            "results": rows,
        },
        Path(args.json) if args.json else None,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
