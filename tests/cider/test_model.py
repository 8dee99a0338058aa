"""CIDer model: shapes, size, positional encoding over positions, masking, checkpoints, ONNX."""

from __future__ import annotations

import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.cider import CIDer, CIDerConfig
from models.cider.modeling_cider import sinusoidal_encoding
from models.config_io import load_config

SMALL = dict(
    text_dim=12,
    audio_dim=10,
    video_dim=8,
    num_classes=3,
    class_names=("a", "b", "c"),
    d_model=16,
    mct_heads=2,
    dropout=0.0,
)


def _inputs(
    B: int = 3, lengths: tuple[int, int, int] = (5, 7, 4), cfg: CIDerConfig | None = None, seed: int = 0
):
    c = cfg or CIDerConfig(**SMALL)
    g = torch.Generator().manual_seed(seed)
    out = []
    for dim, n in zip((c.text_dim, c.audio_dim, c.video_dim), lengths, strict=True):
        out += [torch.randn(B, n, dim, generator=g), torch.ones(B, n, dtype=torch.bool)]
    return out + [torch.ones(B, 3)]


def test_shapes_and_paper_size() -> None:
    m = CIDer(CIDerConfig(**SMALL)).eval()
    o = m(*_inputs())
    assert o.logits.shape == (3, 3) and o.representation.shape == (3, 48)
    assert o.attention.shape == (3, 2, 15, 15) and o.tokens.shape == (3, 3, 5, 16)
    assert [tuple(r.shape) for r in o.reconstruction] == [(3, 5, 12), (3, 7, 10), (3, 4, 8)]
    paper = CIDer(load_config(CIDerConfig, "configs/model/cider.yaml"))
    assert 100_000 < paper.num_parameters() < 300_000  # "about 0.3M without BERT"


def test_positional_encoding_is_over_positions_not_batch() -> None:
    x = torch.zeros(4, 6, 8)
    pe = sinusoidal_encoding(6, 8, 10000.0, x)
    assert pe.shape == (6, 8)
    assert torch.allclose(pe[0], torch.tensor([0.0, 1.0] * 4))  # position 0: sin 0, cos 0
    assert not torch.allclose(pe[1], pe[2])
    # A sample's output does not depend on where it sits in the batch (the public code's bug would).
    m = CIDer(CIDerConfig(**SMALL)).eval()
    inp = _inputs(B=4)
    perm = torch.tensor([2, 0, 3, 1])
    out = m(*inp).logits
    out_p = m(*[t[perm] for t in inp]).logits
    assert torch.allclose(out[perm], out_p, atol=1e-5)
    # ... and it does depend on the ORDER of positions within the sequence.
    rev = list(inp)
    rev[0] = inp[0].flip(1)
    assert not torch.allclose(m(*rev).logits, out, atol=1e-4)


def test_padding_and_missing_modalities_cannot_leak() -> None:
    m = CIDer(CIDerConfig(**SMALL)).eval()
    inp = _inputs(B=2)
    base = m(*inp).logits
    padded = list(inp)
    for i in (0, 2, 4):  # append 3 padded positions filled with garbage to every modality
        x, mk = inp[i], inp[i + 1]
        padded[i] = torch.cat([x, torch.full((2, 3, x.shape[2]), 1e3)], dim=1)
        padded[i + 1] = torch.cat([mk, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    assert torch.allclose(m(*padded).logits, base, atol=1e-4)
    # A missing modality's values (even NaN) never reach the output.
    miss = list(inp)
    miss[6] = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    a = m(*miss).logits
    miss[2] = torch.full_like(inp[2], float("nan"))
    b = m(*miss).logits
    assert torch.isfinite(b).all() and torch.allclose(a, b)
    assert not torch.allclose(a, base, atol=1e-4)  # and the mask does change the prediction
    # Text missing and all text positions padded: slot 0 still carries audio/video.
    none = list(inp)
    none[1] = torch.zeros_like(inp[1])
    none[6] = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    assert torch.isfinite(m(*none).logits).all()


def test_checkpoint_roundtrip(tmp_path) -> None:
    m = CIDer(CIDerConfig(**SMALL)).eval()
    sha = save_checkpoint(tmp_path / "c.safetensors", m, {"class_names": ["a", "b", "c"]})
    ck = load_checkpoint(tmp_path / "c.safetensors")
    assert ck.model_type == "cider" and ck.sha256 == sha and isinstance(ck.model, CIDer)
    inp = _inputs()
    assert torch.equal(ck.model(*inp).logits, m(*inp).logits)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="class_names"):
        CIDerConfig(num_classes=2)
    with pytest.raises(ValueError, match="divisible"):
        CIDerConfig(d_model=30, mct_heads=4)
    with pytest.raises(ValueError, match="missing_mode"):
        load_config(CIDerConfig, None, ["mssd.missing_mode=bogus"])


def test_onnx_export_dynamic_lengths_and_masks(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from models.export import example_inputs, export_onnx
    from models.modalities import INPUT_NAMES

    m = CIDer(CIDerConfig(**SMALL)).eval()
    path = export_onnx(m, tmp_path / "cider.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == list(INPUT_NAMES)
    assert [o.name for o in sess.get_outputs()] == ["logits", "representation"]
    dims = {"text": m.config.text_dim, "audio": m.config.audio_dim, "video": m.config.video_dim}
    for lengths in ((1, 1, 1), (4, 11, 2), (9, 3, 6)):
        for avail in ((1, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 0)):
            lens = dict(zip(("text", "audio", "video"), lengths, strict=True))
            x = list(example_inputs(dims, 2, lens, [avail, avail], ragged=False))
            x[1][1, -1] = lengths[0] == 1  # a padded last text position in sample 1
            ref = m(*x).logits.detach().numpy()
            got = sess.run(None, {k: v.numpy() for k, v in zip(INPUT_NAMES, x, strict=True)})[0]
            assert abs(got - ref).max() < 1e-4, (lengths, avail)


def test_subset_attentions_equal_the_seven_direct_masked_softmaxes() -> None:
    """The factorised MCT attention against the direct form: per subset, softmax over the subset's allowed
    keys for queries in the subset, zero elsewhere; also with one block's scores 200 above the others'
    (a single shared maximum would underflow the rest) and with rows that have no allowed key."""
    from torch import nn

    from models.cider.modeling_cider import SUBSETS, masked_softmax, subset_contexts

    g = torch.Generator().manual_seed(0)
    B, H, L, hd = 3, 2, 5, 4
    n = 3 * L
    mod = torch.cat([torch.full((L,), m) for m in range(3)])
    scores = torch.randn(B, H, n, n, generator=g) * 3
    scores[1, :, :, L : 2 * L] += 200.0  # sample 1: the audio keys dominate every row
    v = torch.randn(B, H, n, hd, generator=g)
    key_ok = torch.rand(B, n, generator=g) > 0.3
    key_ok[2, L : 2 * L] = False  # sample 2: no audio key at all
    got = subset_contexts(scores, v, key_ok, mod, nn.Identity())
    for sub, ctx in zip(SUBSETS, got, strict=True):
        in_sub = torch.zeros(n, dtype=torch.bool)
        for m in sub:
            in_sub |= mod == m
        allowed = key_ok[:, None, None, :] & in_sub[None, None, None, :] & in_sub[None, None, :, None]
        want = torch.matmul(masked_softmax(scores, allowed), v)
        assert torch.allclose(ctx, want, atol=1e-5), sub
        assert torch.isfinite(ctx).all()
