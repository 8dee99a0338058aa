"""CM-ARR reconstruction, part 2: the 1-D residual channel-attention group applied to a flow's inverse."""

from __future__ import annotations

import torch
from torch import nn


class RCAB1d(nn.Module):
    """conv3 -> ReLU -> conv3 -> channel attention (pool, bottleneck, sigmoid) -> + input."""

    def __init__(self, d: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(d, d, 3, padding=1), nn.ReLU(), nn.Conv1d(d, d, 3, padding=1))
        self.ca = nn.Sequential(nn.Conv1d(d, d // reduction, 1), nn.ReLU(), nn.Conv1d(d // reduction, d, 1),
                                nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return x + h * self.ca(h.mean(dim=-1, keepdim=True))


class ReconstructionGroup(nn.Module):
    """A residual group of RCABs on [B, K, d] (the group has its own long residual)."""

    def __init__(self, d: int, blocks: int, reduction: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[RCAB1d(d, reduction) for _ in range(blocks)])
        self.tail = nn.Conv1d(d, d, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)
        return (h + self.tail(self.blocks(h))).transpose(1, 2)
