"""CM-ARR expert fusion head: the product and learned rules that add per-modality experts to the logits."""

from __future__ import annotations

import torch


def availability_row(avail: torch.Tensor) -> torch.Tensor:
    """[B, 3] availability mask -> [B] row 4*t + 2*a + v (0..7) into the per-availability-set tables."""
    return (avail * avail.new_tensor([4.0, 2.0, 1.0])).sum(dim=1).round().long()


def product_rule(
    logits: torch.Tensor, experts: torch.Tensor, avail: torch.Tensor, row: torch.Tensor,
    deep_gate: torch.Tensor, expert_gate: torch.Tensor, prior_bias: torch.Tensor,
) -> torch.Tensor:
    """The (log-linear) product of experts: sum of log-posteriors + prior correction (+ residual).

    ``logits`` [B, C] of the attention path, weighted by ``deep_gate`` [8]; ``experts`` [B, 3, C] each
    expert's calibrated logits, weighted by its exponent ``expert_gate`` [8, 3] where available; plus the
    log-prior correction ``prior_bias`` [8, C]. Every table is read at ``row`` (``availability_row``).
    """
    logits = logits * deep_gate.index_select(0, row).unsqueeze(-1)
    weight = expert_gate.index_select(0, row) * avail  # [B, 3]
    logits = logits + (experts * weight.unsqueeze(-1)).sum(dim=1)
    return logits + prior_bias.index_select(0, row).to(logits.dtype)


def learned_rule(
    logits: torch.Tensor, experts: torch.Tensor, avail: torch.Tensor, row: torch.Tensor,
    deep_gate: torch.Tensor, expert_gate: torch.Tensor,
) -> torch.Tensor:
    """The learned gates: ``logits`` [B, C] weighted by ``deep_gate`` [8] plus the available ``experts``
    [B, 3, C] weighted by ``expert_gate`` [8, 3], both tables read at ``row`` (``availability_row``)."""
    gate = expert_gate.index_select(0, row) * avail  # [B, 3]
    logits = logits * deep_gate.index_select(0, row).unsqueeze(-1)
    return logits + (experts * gate.unsqueeze(-1)).sum(dim=1)
