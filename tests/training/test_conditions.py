from __future__ import annotations

import pytest
import torch

from models.modalities import CONDITIONS
from training.data.conditions import ConditionSampler, MissingConfig


def test_uniform_covers_all_conditions_evenly_and_is_seeded() -> None:
    s = ConditionSampler(MissingConfig(mode="uniform"), seed=3)
    avail = s.sample(torch.ones(7000, 3))
    names = [tuple(int(v) for v in row) for row in avail.tolist()]
    for mask in CONDITIONS.values():
        share = names.count(mask) / len(names)
        assert abs(share - 1 / 7) < 0.02, (mask, share)
    again = ConditionSampler(MissingConfig(mode="uniform"), seed=3).sample(torch.ones(7000, 3))
    assert torch.equal(avail, again)


def test_masks_never_use_absent_modalities_and_never_empty() -> None:
    s = ConditionSampler(MissingConfig(mode="uniform"), seed=0)
    present = torch.tensor([[1.0, 1.0, 0.0]] * 500)  # no video in the data
    avail = s.sample(present)
    assert float(avail[:, 2].max()) == 0.0
    assert bool((avail.sum(dim=1) >= 1).all())
    # a drawn {v} falls back to everything the sample has
    assert any(row == [1.0, 1.0, 0.0] for row in avail.tolist())


def test_full_and_weighted_modes() -> None:
    present = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    assert torch.equal(ConditionSampler(MissingConfig(mode="full")).sample(present), present)
    only_t = MissingConfig(mode="weighted", conditions=("t", "a"), weights=(1.0, 0.0))
    assert ConditionSampler(only_t).sample(torch.ones(50, 3)).tolist() == [[1.0, 0.0, 0.0]] * 50
    with pytest.raises(ValueError, match="one weight per condition"):
        MissingConfig(mode="weighted", conditions=("t",), weights=None)
    with pytest.raises(ValueError, match="unknown names"):
        MissingConfig(conditions=("x",))
