"""CM-ARR temporal alignment: masked pooling of any-length sequences onto K segments; input projection."""

from __future__ import annotations

import torch
from torch import nn


def segment_pool_weights(mask: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Row-normalised weights [B, K, L] that average valid positions into K segments.

    ``mask`` is [B, L] (bool or 0/1). Valid positions are ranked r = 0..l-1 (holes in the mask are
    skipped) and segment k averages ranks in [floor(k*l/K), ceil((k+1)*l/K)), as adaptive average
    pooling does, so every segment is non-empty whenever l >= 1. A row with l = 0 is all zeros.
    """
    m = mask.to(torch.float32)
    rank = torch.cumsum(m, dim=1) - 1.0  # [B, L]
    length = m.sum(dim=1, keepdim=True)  # [B, 1]
    k = torch.arange(num_segments, device=mask.device, dtype=torch.float32).view(1, -1, 1)  # [1, K, 1]
    lk = length.unsqueeze(1)  # [B, 1, 1]
    start = torch.floor(k * lk / num_segments)
    end = torch.ceil((k + 1.0) * lk / num_segments)
    r = rank.unsqueeze(1)  # [B, 1, L]
    w = (r >= start).float() * (r < end).float() * m.unsqueeze(1)  # [B, K, L]
    return w / w.sum(dim=-1, keepdim=True).clamp(min=1.0)


def masked_mean_std(x: torch.Tensor, mask: torch.Tensor, logprob_tail: int = 0) -> torch.Tensor:
    """[B, L, D] and [B, L] mask -> [B, 2D]: mean and standard deviation over the valid positions
    (zeros for a row without any). The last ``logprob_tail`` dims are log-probabilities: their "mean"
    is the log of the mean probability, log(1/n * sum exp(x)) (a row without valid frames gets -1e4)."""
    w = mask.to(x.dtype).unsqueeze(-1)  # [B, L, 1]
    n = w.sum(dim=1).clamp(min=1.0)  # [B, 1]
    mean = (x * w).sum(dim=1) / n
    var = ((x - mean.unsqueeze(1)).pow(2) * w).sum(dim=1) / n
    if logprob_tail:
        d = x.shape[-1] - logprob_tail
        tail = torch.where(w > 0.5, x[..., d:], torch.full_like(x[..., d:], -1e4))
        lme = torch.logsumexp(tail, dim=1) - torch.log(n)  # [B, tail]
        mean = torch.cat([mean[:, :d], lme], dim=-1)
    return torch.cat([mean, torch.sqrt(var + 1e-6)], dim=-1)


class ModalityProjection(nn.Module):
    """1-D convolution D_n -> d over time, then masked pooling onto K segments: [B, L, D] -> [B, K, d]."""

    def __init__(self, in_dim: int, d_model: int, kernel: int, num_segments: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, d_model, kernel_size=kernel, padding=kernel // 2)
        self.num_segments = num_segments

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x * mask.unsqueeze(-1).to(x.dtype)  # padding never leaks into the convolution
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # [B, L, d]
        w = segment_pool_weights(mask, self.num_segments)  # [B, K, L]
        return torch.bmm(w.to(h.dtype), h)  # weights in fp32, applied in the model's dtype (fp16/bf16 too)
