"""Exact semantics of the RMFM-family masks (training.data.missing)."""

from __future__ import annotations

import pytest
import torch

from training.data.missing import MissingAugmenter, MissingSpec, apply_masks, draw_masks


def _masks(lengths: list[int], L: int) -> torch.Tensor:
    return torch.tensor([[i < n for i in range(L)] for n in lengths])


def _check_partition(mm, valid) -> None:
    for k, d, v in zip(mm.kept, mm.dropped, valid, strict=True):
        assert torch.equal(k | d, v)
        assert not bool((k & d).any())


def test_rmfm_is_one_joint_draw_over_concatenated_positions() -> None:
    t, a, v = _masks([3, 5], 6), _masks([4, 2], 4), _masks([2, 2], 3)
    mm = draw_masks(t, a, v, MissingSpec("rmfm", rate=0.4), torch.Generator().manual_seed(7))
    u = torch.rand((2, 6 + 4 + 3), generator=torch.Generator().manual_seed(7))
    keep = torch.split(u >= 0.4, [6, 4, 3], dim=1)
    for i, valid in enumerate((t, a, v)):
        assert torch.equal(mm.kept[i], keep[i] & valid)
    _check_partition(mm, (t, a, v))


def test_rmfm_rates_zero_and_one_and_padding() -> None:
    t, a, v = _masks([3, 1], 4), _masks([2, 2], 2), _masks([1, 3], 3)
    g = torch.Generator().manual_seed(0)
    none = draw_masks(t, a, v, MissingSpec("rmfm", rate=0.0), g)
    assert all(torch.equal(k, m) for k, m in zip(none.kept, (t, a, v), strict=True))
    everything = draw_masks(t, a, v, MissingSpec("rmfm", rate=1.0), g)
    assert all(torch.equal(d, m) for d, m in zip(everything.dropped, (t, a, v), strict=True))
    assert everything.any_kept().sum() == 0


def test_rmfm_same_separate_draws_and_per_modality_rates() -> None:
    t, a, v = _masks([5], 5), _masks([4], 4), _masks([3], 3)
    mm = draw_masks(t, a, v, MissingSpec("rmfm_same", rate=0.5), torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    expect = [torch.rand((1, n), generator=g) >= 0.5 for n in (5, 4, 3)]  # text, audio, video in order
    assert all(torch.equal(k, e) for k, e in zip(mm.kept, expect, strict=True))
    # Per-modality rates (1, 0, 0) = the specific-modality case "text missing".
    only = draw_masks(
        t, a, v, MissingSpec("rmfm_same", rate=(1.0, 0.0, 0.0)), torch.Generator().manual_seed(1)
    )
    assert not bool(only.kept[0].any()) and bool(only.kept[1].all()) and bool(only.kept[2].all())
    with pytest.raises(ValueError, match="rmfm_same"):
        MissingSpec("rmfm", rate=(0.1, 0.2, 0.3))


def test_rmfm_training_rates_differ_per_modality() -> None:
    B = 400
    t, a, v = (
        torch.ones(B, 50, dtype=torch.bool),
        torch.ones(B, 50, dtype=torch.bool),
        torch.ones(B, 50, dtype=torch.bool),
    )
    mm = draw_masks(t, a, v, MissingSpec("rmfm"), torch.Generator().manual_seed(0))
    frac = torch.stack(
        [d.float().mean(dim=1) for d in mm.dropped], dim=1
    )  # [B, 3] per-sample dropped fraction
    spread = (frac.max(dim=1).values - frac.min(dim=1).values).mean()
    assert spread > 0.2  # independent U(0,1) rates per modality, not one shared rate
    same = draw_masks(t, a, v, MissingSpec("rmfm_same"), torch.Generator().manual_seed(0))
    frac_s = torch.stack([d.float().mean(dim=1) for d in same.dropped], dim=1)
    assert (frac_s.max(dim=1).values - frac_s.min(dim=1).values).mean() < 0.2
    assert 0.4 < mm.rate_dropped() < 0.6


def test_rmm_drops_whole_modalities_at_rate() -> None:
    B = 2000
    t, a, v = _masks([4] * B, 6), _masks([3] * B, 3), _masks([2] * B, 5)
    mm = draw_masks(t, a, v, MissingSpec("rmm", rate=0.3), torch.Generator().manual_seed(0))
    for k, valid in zip(mm.kept, (t, a, v), strict=True):
        rows_all = (k == valid).all(dim=1)
        rows_none = ~k.any(dim=1)
        assert bool((rows_all | rows_none).all())  # all or nothing per sample
        assert abs(rows_none.float().mean().item() - 0.3) < 0.04


def test_tmfm_shared_time_mask_on_aligned_data() -> None:
    m = _masks([6, 4, 2], 6)
    mm = draw_masks(m, m, m, MissingSpec("tmfm", rate=0.5), torch.Generator().manual_seed(2))
    assert torch.equal(mm.kept[0], mm.kept[1]) and torch.equal(mm.kept[0], mm.kept[2])
    expect = (torch.rand((3, 6), generator=torch.Generator().manual_seed(2)) >= 0.5) & m
    assert torch.equal(mm.kept[0], expect)


def test_tmfm_on_unaligned_sequences_drops_the_same_time_in_every_modality() -> None:
    # Speech frames (20 and 10 valid) next to word tokens (4 and 5 valid), no video: the audio is the
    # reference axis, and token i of n sits at relative time (i + 0.5) / n.
    text, audio, video = _masks([4, 5], 6), _masks([20, 10], 20), _masks([0, 0], 1)
    for seed in range(4):
        mm = draw_masks(
            text, audio, video, MissingSpec("tmfm", rate=0.5), torch.Generator().manual_seed(seed)
        )
        for b, (nt, na) in enumerate(((4, 20), (5, 10))):
            for i in range(nt):
                j = int((i + 0.5) * na / nt)
                assert bool(mm.kept[0][b, i]) == bool(mm.kept[1][b, j])
        assert not mm.kept[2].any() and not mm.dropped[2].any()
    big = draw_masks(
        _masks([8] * 400, 8),
        _masks([40] * 400, 40),
        _masks([0] * 400, 1),
        MissingSpec("tmfm", rate=0.3),
        torch.Generator().manual_seed(0),
    )
    assert abs(big.dropped[1].float().mean().item() - 0.3) < 0.02  # the rate holds on the reference axis
    assert abs(big.dropped[0].float().mean().item() - 0.3) < 0.03


def test_stmfm_on_unaligned_sequences_is_one_time_region() -> None:
    text, audio, video = _masks([10], 10), _masks([100], 100), _masks([0], 1)
    for seed in range(5):
        mm = draw_masks(
            text, audio, video, MissingSpec("stmfm", rate=0.4), torch.Generator().manual_seed(seed)
        )
        hole_a = mm.dropped[1][0].nonzero().flatten().tolist()
        assert len(hole_a) == round(98 * 0.4) and hole_a == list(range(hole_a[0], hole_a[0] + len(hole_a)))
        hole_t = mm.dropped[0][0].nonzero().flatten().tolist()
        assert hole_t == list(range(hole_t[0], hole_t[0] + len(hole_t)))  # contiguous tokens
        # every dropped token's centre lies inside the dropped stretch of speech
        assert all(hole_a[0] <= int((i + 0.5) * 10) <= hole_a[-1] for i in hole_t)


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5, 1.0])
def test_stmfm_one_contiguous_block(rate: float) -> None:
    lengths = [12, 7, 3, 2, 10]
    m = _masks(lengths, 12)
    for seed in range(5):
        mm = draw_masks(m, m, m, MissingSpec("stmfm", rate=rate), torch.Generator().manual_seed(seed))
        assert torch.equal(mm.dropped[0], mm.dropped[1]) and torch.equal(mm.dropped[0], mm.dropped[2])
        for b, n in enumerate(lengths):
            hole = mm.dropped[0][b].nonzero().flatten().tolist()
            assert len(hole) == round((n - 2) * rate)
            if hole:
                assert hole == list(range(hole[0], hole[0] + len(hole)))  # contiguous
                assert hole[0] >= 1 and hole[-1] <= n - 2  # never the first or last position


def test_smm_fixed_and_random_combinations() -> None:
    m = _masks([3, 2], 3)
    mm = draw_masks(m, m, m, MissingSpec("smm", condition="ta"), torch.Generator())
    assert torch.equal(mm.kept[0], m) and torch.equal(mm.kept[1], m) and not bool(mm.kept[2].any())
    big = _masks([1] * 700, 1)
    rnd = draw_masks(big, big, big, MissingSpec("smm"), torch.Generator().manual_seed(0))
    combos = {tuple(int(x) for x in row) for row in rnd.any_kept().tolist()}
    assert combos == {(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 0), (1, 1, 1)}


def test_token_ids_unk_and_protected_ends() -> None:
    ids = torch.tensor([[101, 7, 8, 9, 102, 0], [101, 5, 102, 0, 0, 0]])
    valid = ids != 0
    mm = draw_masks(
        valid,
        valid,
        valid,
        MissingSpec("rmfm_same", rate=1.0, protect_text_ends=True),
        torch.Generator().manual_seed(0),
    )
    batch = {
        "text": ids,
        "audio": torch.ones(2, 6, 4),
        "video": torch.ones(2, 6, 3),
        "text_mask": valid,
        "audio_mask": valid,
        "video_mask": valid,
        "present": torch.ones(2, 3),
    }
    out = apply_masks(batch, mm, text_token_ids=True)
    assert out["text"].tolist() == [[101, 100, 100, 100, 102, 0], [101, 100, 102, 0, 0, 0]]
    assert float(out["audio"].abs().sum()) == 0.0 and float(out["video"].abs().sum()) == 0.0
    assert out["avail"].tolist() == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]  # text keeps [CLS]/[SEP]
    assert torch.equal(out["text_mask"], valid)  # positions still exist


def test_feature_text_zeroed_and_avail_update_on_real_shape() -> None:
    # MOSI layout: one vector per modality (L = 1): RMFM drops whole modalities per sample.
    B = 64
    batch = {
        "text": torch.randn(B, 1, 100),
        "audio": torch.randn(B, 1, 73),
        "video": torch.randn(B, 1, 100),
        "text_mask": torch.ones(B, 1, dtype=torch.bool),
        "audio_mask": torch.ones(B, 1, dtype=torch.bool),
        "video_mask": torch.ones(B, 1, dtype=torch.bool),
        "present": torch.ones(B, 3),
        "label": torch.zeros(B),
    }
    masked, mm = MissingAugmenter(MissingSpec("rmfm", rate=0.5), seed=1)(batch)
    gone = masked["avail"] == 0
    for i, m in enumerate(("text", "audio", "video")):
        assert torch.equal(gone[:, i], mm.dropped[i][:, 0])
        assert float(masked[m][gone[:, i]].abs().sum()) == 0.0
        assert torch.equal(masked[m][~gone[:, i]], batch[m][~gone[:, i]])
    again, _ = MissingAugmenter(MissingSpec("rmfm", rate=0.5), seed=1)(batch)
    assert torch.equal(again["avail"], masked["avail"])  # seeded


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="unknown missing mode"):
        MissingSpec("nope")
    with pytest.raises(ValueError, match="rate"):
        MissingSpec("rmfm", rate=1.5)
    with pytest.raises(ValueError, match="condition"):
        MissingSpec("rmfm", condition="t")
