"""One optimiser step, shared by the trainer (``training.loop.train``) and the variant comparisons
(``training.loop.variants``)."""

from __future__ import annotations

from typing import Any

import torch


def optimizer_step(
    loss: torch.Tensor,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float = 1.0,
) -> None:
    """Gradients of ``loss`` (scaled by ``scaler`` under fp16 autocast), clipped at norm ``grad_clip``
    (0: not clipped, after unscaling), then the optimiser and the scheduler step."""
    optimizer.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if grad_clip > 0:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
