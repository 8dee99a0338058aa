"""Which modalities each training sample may use: per-sample missing-condition sampling.

Modes (``MissingConfig.mode``):

* ``"full"``     every sample uses all of its modalities (the full-modality baseline).
* ``"uniform"``  each sample draws one condition uniformly from ``conditions`` (default: the six
                 missing conditions plus full, i.e. MMIN-style training).
* ``"weighted"`` as uniform, with probabilities proportional to ``weights``.

The drawn availability mask is intersected with what the sample really has (``present``); if that
leaves nothing, the sample falls back to everything it has. Hidden-but-present modalities are exactly
where CM-ARR's reconstruction loss has ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.modalities import CONDITIONS


@dataclass
class MissingConfig:
    mode: str = "uniform"
    conditions: tuple[str, ...] = ("t", "a", "v", "tv", "av", "ta", "tav")
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("full", "uniform", "weighted"):
            raise ValueError(f"missing.mode must be 'full', 'uniform' or 'weighted', got {self.mode!r}")
        bad = [c for c in self.conditions if c not in CONDITIONS]
        if bad:
            raise ValueError(f"missing.conditions has unknown names {bad}; known: {sorted(CONDITIONS)}")
        if not self.conditions:
            raise ValueError("missing.conditions must not be empty")
        if self.mode == "weighted":
            if self.weights is None or len(self.weights) != len(self.conditions):
                raise ValueError("missing.mode 'weighted' needs one weight per condition")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError(f"missing.weights must be >= 0 with a positive sum, got {self.weights}")


class ConditionSampler:
    """Draws [B, 3] availability masks with its own generator (deterministic given the seed)."""

    def __init__(self, config: MissingConfig, seed: int = 0) -> None:
        self.config = config
        self.masks = torch.tensor([CONDITIONS[c] for c in config.conditions], dtype=torch.float32)  # [N, 3]
        if config.mode == "weighted":
            w = torch.tensor(config.weights, dtype=torch.float64)  # type: ignore[arg-type]
        else:
            w = torch.ones(len(config.conditions), dtype=torch.float64)
        self.probs = w / w.sum()
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, present: torch.Tensor) -> torch.Tensor:
        """present [B, 3] float (1 = the modality exists) -> avail [B, 3] float on present's device."""
        p = present.detach().to("cpu", torch.float32)
        if self.config.mode == "full":
            return present.clone().float()
        idx = torch.multinomial(self.probs, p.shape[0], replacement=True, generator=self.generator)
        avail = self.masks[idx] * p
        empty = avail.sum(dim=1) == 0
        avail[empty] = p[empty]
        return avail.to(present.device)

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
