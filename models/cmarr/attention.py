"""CM-ARR attention blocks, written with plain matmuls so that lengths stay dynamic in ONNX export."""

from __future__ import annotations

import math

import torch
from torch import nn


class Attention(nn.Module):
    """Multi-head attention returning (output [B, Lq, d], weights [B, H, Lq, Lk])."""

    def __init__(self, d_q: int, d_kv: int, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.q = nn.Linear(d_q, d_model)
        self.k = nn.Linear(d_kv, d_model)
        self.v = nn.Linear(d_kv, d_model)
        self.out = nn.Linear(d_model, d_q)
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        return x.reshape(b, -1, self.heads, self.head_dim).transpose(1, 2)  # [B, H, L, hd]

    def forward(self, q_in: torch.Tensor, kv_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self._split(self.q(q_in)), self._split(self.k(kv_in)), self._split(self.v(kv_in))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        attn = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(self.drop(attn), v)  # [B, H, Lq, hd]
        ctx = ctx.transpose(1, 2).reshape(q_in.shape[0], -1, self.heads * self.head_dim)
        return self.out(ctx), scores


class FeedForward(nn.Module):
    def __init__(self, d: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d * mult), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(d * mult, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AttentionBlock(nn.Module):
    """Pre-LayerNorm transformer block; cross-attention when ``kv`` differs from ``q``."""

    def __init__(self, d_q: int, d_kv: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.ln_q = nn.LayerNorm(d_q)
        self.ln_kv = nn.LayerNorm(d_kv)
        self.attn = Attention(d_q, d_kv, d_q, heads, dropout)
        self.ln_ff = nn.LayerNorm(d_q)
        self.ff = FeedForward(d_q, ff_mult, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, kv: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        qn = self.ln_q(q)
        kvn = qn if kv is None else self.ln_kv(kv)
        a, scores = self.attn(qn, kvn)
        h = q + self.drop(a)
        h = h + self.drop(self.ff(self.ln_ff(h)))
        return h, scores
