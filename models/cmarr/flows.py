"""CM-ARR reconstruction, part 1: the invertible per-modality normalizing flows F_n (Glow-style steps)."""

from __future__ import annotations

import torch
from torch import nn


class ActNorm(nn.Module):
    """Per-channel affine y = x * exp(logs) + bias on [B, d, K]; logdet = K * sum(logs)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.logs = nn.Parameter(torch.zeros(1, d, 1))
        self.bias = nn.Parameter(torch.zeros(1, d, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = self.logs.sum() * x.shape[2]
        return x * torch.exp(self.logs) + self.bias, logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.bias) * torch.exp(-self.logs)


class Permute(nn.Module):
    """Fixed random channel permutation (a buffer, saved in checkpoints); logdet 0."""

    def __init__(self, d: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(d, generator=g)
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.perm)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y.index_select(1, self.inv_perm)


class AffineCoupling(nn.Module):
    """RealNVP/Glow affine coupling on [B, d, K].

    The first half conditions a scale and shift for the second half through a small temporal CNN.
    log-scale is bounded as c*tanh(s/c) so the inverse stays well conditioned. The last conv is
    zero-initialised, so each coupling starts as the identity.
    """

    def __init__(self, d: int, hidden: int, kernel: int, clamp: float) -> None:
        super().__init__()
        self.half = d // 2
        self.clamp = clamp
        self.net = nn.Sequential(
            nn.Conv1d(self.half, hidden, kernel, padding=kernel // 2), nn.GELU(),
            nn.Conv1d(hidden, hidden, 1), nn.GELU(),
            nn.Conv1d(hidden, 2 * (d - self.half), kernel, padding=kernel // 2),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _params(self, xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(xa).chunk(2, dim=1)
        return self.clamp * torch.tanh(s / self.clamp), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x[:, : self.half], x[:, self.half :]
        log_s, t = self._params(xa)
        yb = xb * torch.exp(log_s) + t
        return torch.cat([xa, yb], dim=1), log_s.sum(dim=(1, 2))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        ya, yb = y[:, : self.half], y[:, self.half :]
        log_s, t = self._params(ya)
        return torch.cat([ya, (yb - t) * torch.exp(-log_s)], dim=1)


class ModalityFlow(nn.Module):
    """F_n: X [B, K, d] -> (Z [B, K, d], logdet [B]); ``inverse`` is its exact inverse."""

    def __init__(self, d: int, steps: int, hidden: int, kernel: int, clamp: float, seed: int) -> None:
        super().__init__()
        self.actnorms = nn.ModuleList([ActNorm(d) for _ in range(steps)])
        self.perms = nn.ModuleList([Permute(d, seed * 1000 + i) for i in range(steps)])
        self.couplings = nn.ModuleList([AffineCoupling(d, hidden, kernel, clamp) for _ in range(steps)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.transpose(1, 2)
        logdet = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for an, pm, cp in zip(self.actnorms, self.perms, self.couplings, strict=True):
            h, ld = an(h)
            logdet = logdet + ld
            h = pm(h)
            h, ld = cp(h)
            logdet = logdet + ld
        return h.transpose(1, 2), logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        h = z.transpose(1, 2)
        for an, pm, cp in zip(reversed(self.actnorms), reversed(self.perms), reversed(self.couplings),
                              strict=True):
            h = cp.inverse(h)
            h = pm.inverse(h)
            h = an.inverse(h)
        return h.transpose(1, 2)
