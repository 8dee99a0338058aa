"""MSSD losses and the CIDer / CM-ARR MSSD adapters."""

from __future__ import annotations

import torch

from models.cider import CIDerConfig
from training.loop.mssd import (
    CIDerAdapter,
    CMARRMSSDAdapter,
    MSSDOutput,
    attention_kl,
    masked_smooth_l1,
    representation_loss,
)


def test_attention_kl_properties() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 2, 4, 4, generator=g)
    assert float(attention_kl(a, a)) < 1e-7
    b = torch.randn(2, 2, 4, 4, generator=g)
    assert float(attention_kl(b, a)) > 1e-3
    # Padded keys/rows are ignored: changing scores at a padded key changes nothing.
    mask = torch.tensor([[True, True, True, False]] * 2)
    c = b.clone()
    c[..., 3] += 50.0
    c[:, :, 3, :] += 7.0
    assert torch.allclose(attention_kl(b, a, mask), attention_kl(c, a, mask))
    # Exact value on one row: KL(p || q).
    t = torch.tensor([[[[0.0, 1.0]]]])
    s = torch.tensor([[[[1.0, 0.0]]]])
    p, q = torch.softmax(t, -1), torch.softmax(s, -1)
    assert torch.allclose(attention_kl(s, t), (p * (p.log() - q.log())).sum())


def test_reconstruction_counts_dropped_positions_only() -> None:
    pred = torch.randn(2, 5, 3, requires_grad=True)
    target = torch.randn(2, 5, 3)
    dropped = torch.tensor([[True, False, False, True, False], [False] * 5])
    loss = masked_smooth_l1(pred, target, dropped)
    other = pred.detach().clone()
    other[~dropped] += 100.0  # kept positions may be anything
    assert torch.allclose(masked_smooth_l1(other, target, dropped), loss)
    expect = torch.nn.functional.smooth_l1_loss(pred[dropped], target[dropped])
    assert torch.allclose(loss, expect)
    loss.backward()
    assert float(pred.grad[~dropped].abs().sum()) == 0.0
    assert float(masked_smooth_l1(pred, target, torch.zeros(2, 5, dtype=torch.bool))) == 0.0


def test_representation_loss_stops_teacher_gradient() -> None:
    s = torch.randn(4, 6, requires_grad=True)
    t = torch.randn(4, 6, requires_grad=True)
    representation_loss(s, t).backward()
    assert t.grad is None and s.grad is not None
    assert float(representation_loss(t, t)) < 1e-6


def _batch(B: int = 8) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "text": torch.randn(B, 4, 12, generator=g),
        "audio": torch.randn(B, 6, 10, generator=g),
        "video": torch.randn(B, 3, 8, generator=g),
        "text_mask": torch.ones(B, 4, dtype=torch.bool),
        "audio_mask": torch.ones(B, 6, dtype=torch.bool),
        "video_mask": torch.ones(B, 3, dtype=torch.bool),
        "present": torch.ones(B, 3),
        "label": torch.arange(B) % 2,
    }


def test_cider_adapter_mssd_step() -> None:
    adapter = CIDerAdapter()
    cfg = CIDerConfig(
        text_dim=12, audio_dim=10, video_dim=8, num_classes=2, class_names=("n", "p"), d_model=16, mct_heads=2
    )
    model = adapter.build(cfg).train()
    torch.manual_seed(0)
    out = adapter.forward(model, _batch())
    assert isinstance(out, MSSDOutput)
    assert out.masks.rate_dropped() > 0.0
    losses = adapter.loss(model, out, _batch())
    for k in ("cls", "cls_teacher", "rep", "att", "rec", "total"):
        assert torch.isfinite(losses[k]), k
    assert float(losses["rec"]) > 0 and float(losses["att"]) >= 0
    losses["total"].backward()
    assert (
        model.recon["audio"].weight.grad is not None
        and float(model.recon["audio"].weight.grad.abs().sum()) > 0
    )
    model.eval()
    plain = adapter.forward(model, _batch())
    assert not isinstance(plain, MSSDOutput) and adapter.logits(plain).shape == (8, 2)


def test_cmarr_mssd_adapter_step() -> None:
    from models.cmarr import CMARRConfig

    adapter = CMARRMSSDAdapter()
    cfg = CMARRConfig(
        text_dim=12,
        audio_dim=10,
        video_dim=8,
        num_classes=2,
        class_names=("n", "p"),
        d_model=16,
        num_segments=2,
        umc_heads=2,
        umc_dim=8,
        flow_steps=1,
        flow_hidden=16,
        rcab_blocks=1,
        rcab_reduction=4,
        fusion_heads=2,
    )
    model = adapter.build(cfg).train()
    torch.manual_seed(1)
    out = adapter.forward(model, _batch())
    losses = adapter.loss(model, out, _batch())
    for k in ("cls", "cls_teacher", "mssd_rep", "mssd_att", "mssd_rec", "total"):
        assert torch.isfinite(losses[k]), k
    gone = (out.student.avail < 0.5).any()
    assert (float(losses["mssd_rec"]) > 0) == bool(gone)
    losses["total"].backward()
