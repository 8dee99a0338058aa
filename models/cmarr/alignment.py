"""CM-ARR alignment: the uncertainty modelling component (UMC), a point sequence -> diagonal Gaussian."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.cmarr.attention import AttentionBlock


class UMC(nn.Module):
    """Point sequence [B, K, d] -> diagonal Gaussian (mu [B, g], var [B, g]).

    Feature-level interaction by an MLP, sequence-level interaction by multi-head self-attention,
    both with GELU and LayerNorm (paper Fig. 3). ``point=True`` gives the "w/ Point" ablation:
    var is identically 0, so the 2-Wasserstein distance reduces to the squared Euclidean distance.
    """

    def __init__(self, d: int, g: int, heads: int, dropout: float, point: bool) -> None:
        super().__init__()
        self.point = point
        self.ln1 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.seq = AttentionBlock(d, d, heads, 2, dropout)
        self.ln2 = nn.LayerNorm(d)
        self.mu = nn.Linear(d, g)
        self.logvar = nn.Linear(d, g)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x + self.mlp(self.ln1(x))
        h, _ = self.seq(h)
        pooled = self.ln2(h.mean(dim=1))
        mu = self.mu(pooled)
        if self.point:
            return mu, torch.zeros_like(mu)
        var = F.softplus(self.logvar(pooled)) + 1e-6  # strictly positive
        return mu, var
