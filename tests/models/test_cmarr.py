"""CM-ARR behaviour: flows, distances, contrastive losses, mask semantics, training signal."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.cmarr import CMARR, CMARRConfig, cmarr_loss, supcon_loss, symmetric_info_nce, w2_distance
from models.cmarr.flows import ModalityFlow
from models.cmarr.segments import segment_pool_weights
from models.config_io import from_dict, to_dict
from models.modalities import CONDITIONS

SMALL = dict(text_dim=10, audio_dim=12, video_dim=7, d_model=32, umc_dim=16, flow_hidden=32, umc_heads=4,
             fusion_heads=4, num_segments=4, rcab_blocks=2, dropout=0.0)


def small_model(seed: int = 0, **kw) -> CMARR:
    torch.manual_seed(seed)
    return CMARR(CMARRConfig(**{**SMALL, **kw}))


def inputs(batch: int = 4, lt: int = 5, la: int = 9, lv: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    t, a, v = (torch.randn(batch, lt, 10, generator=g), torch.randn(batch, la, 12, generator=g),
               torch.randn(batch, lv, 7, generator=g))
    masks = [torch.ones(batch, n, dtype=torch.bool) for n in (lt, la, lv)]
    masks[0][1:, lt - 2:] = False  # ragged text
    return t, masks[0], a, masks[1], v, masks[2]


def _randomise_flow(flow: ModalityFlow) -> None:
    # Couplings start as the identity (zero-initialised last conv); make them non-trivial.
    # Moderate magnitudes, like a trained flow: float32 round-off stays far below the 1e-5 tolerance.
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))


def test_flow_inverse_is_exact():
    torch.manual_seed(0)
    flow = ModalityFlow(d=16, steps=4, hidden=24, kernel=3, clamp=2.0, seed=3)
    _randomise_flow(flow)
    x = torch.randn(5, 6, 16)
    z, _ = flow(x)
    assert (z - x).abs().max() > 1e-2  # it really transforms
    assert torch.allclose(flow.inverse(z), x, atol=1e-5)
    z2 = torch.randn(5, 6, 16)
    assert torch.allclose(flow(flow.inverse(z2))[0], z2, atol=1e-5)


def test_flow_permutes_every_channel():
    flow = ModalityFlow(d=16, steps=2, hidden=8, kernel=3, clamp=2.0, seed=1)
    perm = flow.perms[0].perm
    assert sorted(perm.tolist()) == list(range(16))
    assert perm.tolist() != list(range(16))


def test_flow_logdet_matches_numerical_jacobian():
    torch.manual_seed(1)
    flow = ModalityFlow(d=4, steps=3, hidden=8, kernel=3, clamp=2.0, seed=2).double()
    _randomise_flow(flow)
    x = torch.randn(1, 3, 4, dtype=torch.float64)  # [B=1, K=3, d=4] -> 12 variables

    def f(flat: torch.Tensor) -> torch.Tensor:
        return flow(flat.view(1, 3, 4))[0].reshape(-1)

    jac = torch.autograd.functional.jacobian(f, x.reshape(-1))
    _, logdet = flow(x)
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign.item() > 0
    assert logdet.item() == pytest.approx(logabs.item(), abs=1e-8)


def test_w2_distance_closed_form():
    mu1 = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    var1 = torch.tensor([[1.0, 4.0], [0.25, 1.0]])
    mu2 = torch.tensor([[3.0, 4.0]])
    var2 = torch.tensor([[9.0, 1.0]])
    d = w2_distance(mu1, var1, mu2, var2)
    # ||mu diff||^2 + ||sd1 - sd2||^2, by hand
    assert d[0, 0].item() == pytest.approx(25.0 + (1 - 3) ** 2 + (2 - 1) ** 2)
    assert d[1, 0].item() == pytest.approx((4.0 + 4.0) + (0.5 - 3) ** 2 + (1 - 1) ** 2)
    # identical Gaussians are at distance 0; the point ablation (var 0) is squared Euclidean
    assert w2_distance(mu1, var1, mu1, var1).diagonal().abs().max().item() < 1e-5
    z = torch.zeros_like(mu1)
    assert torch.allclose(w2_distance(mu1, z, mu2, torch.zeros_like(mu2)), torch.cdist(mu1, mu2) ** 2)


def test_info_nce_symmetric_and_lowest_for_matching_pairs():
    torch.manual_seed(0)
    s = torch.randn(6, 6)
    assert symmetric_info_nce(s).item() == pytest.approx(symmetric_info_nce(s.t()).item(), abs=1e-6)
    aligned = torch.eye(6) * 10.0  # positives on the diagonal score highest
    shuffled = aligned[torch.tensor([1, 2, 3, 4, 5, 0])]
    assert symmetric_info_nce(aligned) < symmetric_info_nce(torch.zeros(6, 6)) < symmetric_info_nce(shuffled)


def test_supcon_matches_direct_formula():
    feats = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    labels = torch.tensor([0, 0, 1, 1])
    t = 0.5
    z = F.normalize(feats, dim=1)
    total = 0.0
    for i in range(4):
        denom = sum(math.exp(float(z[i] @ z[a]) / t) for a in range(4) if a != i)
        pos = [p for p in range(4) if p != i and labels[p] == labels[i]]
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / t) / denom) for p in pos) / len(pos)
    assert supcon_loss(feats, labels, t).item() == pytest.approx(total / 4, rel=1e-5)


def test_segment_pooling_averages_valid_positions():
    mask = torch.tensor([[True, True, True, True, False, False], [True, False, False, False, False, False]])
    w = segment_pool_weights(mask, 2)
    x = torch.arange(6, dtype=torch.float32).view(1, 6, 1).expand(2, 6, 1)
    pooled = torch.bmm(w, x).squeeze(-1)
    assert pooled[0].tolist() == [0.5, 2.5]  # positions {0,1} and {2,3}; padding ignored
    assert pooled[1].tolist() == [0.0, 0.0]  # one valid frame fills every segment
    assert torch.all(segment_pool_weights(torch.zeros(1, 3, dtype=torch.bool), 4) == 0)


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("cond", [c for c in CONDITIONS if c != "tav"])
def test_missing_modality_inputs_do_not_reach_outputs(cond, skip):
    model = small_model(pooled_skip=skip, logprob_tail=(0, 0, 2) if skip else (0, 0, 0)).eval()
    args = list(inputs())
    avail = torch.tensor(CONDITIONS[cond], dtype=torch.float32).expand(4, 3)
    with torch.no_grad():
        ref = model(*args, avail)
        perturbed = list(args)
        for i, bit in enumerate(CONDITIONS[cond]):
            if not bit:
                perturbed[2 * i] = torch.full_like(args[2 * i], float("nan"))  # even NaN must not leak
        out = model(*perturbed, avail)
    assert torch.equal(out.logits, ref.logits)
    assert torch.equal(out.features, ref.features)
    assert torch.isfinite(out.logits).all()


def test_pooled_skip_is_each_modalitys_linear_reading_of_its_statistics():
    """With the attention path silenced, the logits are the sum of the available modalities' linear
    readings of their masked mean and standard deviation."""
    from models.cmarr.segments import masked_mean_std

    model = small_model(pooled_skip=True).eval()
    with torch.no_grad():
        for p in model.head[-1].parameters():
            p.zero_()
    args = list(inputs())
    avail = torch.tensor([[1.0, 1.0, 0.0]]).expand(4, 3)
    with torch.no_grad():
        out = model(*args, avail).logits
        want = sum(model.skip[m](masked_mean_std(args[2 * i], args[2 * i + 1])) for i, m in
                   enumerate(("text", "audio")))
    assert torch.allclose(out, want, atol=1e-5)
    st = masked_mean_std(torch.tensor([[[1.0], [3.0], [100.0]]]), torch.tensor([[True, True, False]]))
    assert torch.allclose(st, torch.tensor([[2.0, 1.0]]), atol=1e-3)  # the padded 100 is ignored


def test_full_mask_uses_every_input():
    model = small_model().eval()
    args = list(inputs())
    avail = torch.ones(4, 3)
    with torch.no_grad():
        ref = model(*args, avail).logits
        for i in range(3):
            pert = list(args)
            pert[2 * i] = args[2 * i] + 1.0
            assert (model(*pert, avail).logits - ref).abs().max() > 1e-6, f"modality {i} ignored"


def test_missing_modality_is_reconstructed_from_available_ones():
    model = small_model().eval()
    args = list(inputs())
    avail = torch.tensor([[0.0, 1.0, 1.0]]).expand(4, 3)
    with torch.no_grad():
        out = model(*args, avail)
        pert = list(args)
        pert[2] = args[2] + 1.0  # change audio: the reconstructed text must change
        out2 = model(*pert, avail)
    assert (out.features[:, 0] - out2.features[:, 0]).abs().max() > 1e-6
    assert torch.equal(out.features[:, 0], out.reconstructed[:, 0])
    assert torch.equal(out.features[:, 1], out.projected[:, 1])


def test_point_ablation_has_zero_variance_and_loss_terms_switch_off():
    model = small_model(embedding="point")
    args = inputs()
    out = model(*args, torch.ones(4, 3))
    assert torch.all(out.var == 0)
    model.config.losses.alpha = 0.0
    model.config.losses.beta = 0.0
    terms = cmarr_loss(model, out, torch.tensor([0, 1, 2, 3]))
    assert terms["udcl"].item() == 0.0 and terms["spcl"].item() == 0.0
    assert terms["total"].item() == pytest.approx(terms["cls"].item())


def test_reconstruction_loss_counts_only_known_hidden_modalities():
    model = small_model()
    args = inputs()
    labels = torch.tensor([0, 1, 2, 3])
    full = model(*args, torch.ones(4, 3), present=torch.ones(4, 3))
    assert cmarr_loss(model, full, labels)["rec"].item() == 0.0  # nothing hidden
    hidden = model(*args, torch.tensor([[1.0, 0.0, 1.0]]).expand(4, 3), present=torch.ones(4, 3))
    assert cmarr_loss(model, hidden, labels)["rec"].item() > 0.0
    unknown = model(*args, torch.tensor([[1.0, 0.0, 1.0]]).expand(4, 3))  # audio absent from the data
    assert cmarr_loss(model, unknown, labels)["rec"].item() == 0.0


def test_overfits_small_fixed_batch_under_random_missing_conditions():
    torch.manual_seed(0)
    model = small_model(seed=0)
    b = 16
    g = torch.Generator().manual_seed(5)
    labels = torch.arange(b) % 4
    # Class-dependent signal in every modality, so each single modality can carry the label.
    protos = {m: torch.randn(4, dim, generator=g) for m, dim in (("t", 10), ("a", 12), ("v", 7))}
    t = protos["t"][labels].unsqueeze(1).repeat(1, 5, 1) + 0.3 * torch.randn(b, 5, 10, generator=g)
    a = protos["a"][labels].unsqueeze(1).repeat(1, 9, 1) + 0.3 * torch.randn(b, 9, 12, generator=g)
    v = protos["v"][labels].unsqueeze(1).repeat(1, 3, 1) + 0.3 * torch.randn(b, 3, 7, generator=g)
    masks = [torch.ones(b, n, dtype=torch.bool) for n in (5, 9, 3)]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    conds = torch.tensor(list(CONDITIONS.values()), dtype=torch.float32)
    for _ in range(150):
        avail = conds[torch.randint(0, 7, (b,), generator=g)]
        out = model(t, masks[0], a, masks[1], v, masks[2], avail, present=torch.ones(b, 3))
        loss = cmarr_loss(model, out, labels)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accs = []
        for mask in CONDITIONS.values():
            avail = torch.tensor(mask, dtype=torch.float32).expand(b, 3)
            pred = model(t, masks[0], a, masks[1], v, masks[2], avail).logits.argmax(-1)
            accs.append((pred == labels).float().mean().item())
    assert min(accs) >= 0.95, accs


def test_config_validation_and_round_trip():
    cfg = CMARRConfig(**SMALL)
    assert from_dict(CMARRConfig, to_dict(cfg)) == cfg
    with pytest.raises(ValueError, match="d_model"):
        CMARRConfig(d_model=33)
    with pytest.raises(ValueError, match="embedding"):
        CMARRConfig(embedding="box")
    with pytest.raises(ValueError, match="unknown key"):
        from_dict(CMARRConfig, {"txt_dim": 3})
    with pytest.raises(ValueError, match="beta"):
        from_dict(CMARRConfig, {"losses": {"beta": -1}})


def test_yaml_exponent_without_dot_is_a_float():
    from models.config_io import apply_overrides

    data = apply_overrides({}, ["losses.spcl_temperature=7e-2", "dropout=1e-1"])
    cfg = from_dict(CMARRConfig, data)
    assert cfg.losses.spcl_temperature == pytest.approx(0.07) and cfg.dropout == pytest.approx(0.1)
    with pytest.raises(ValueError, match="expected a number"):
        from_dict(CMARRConfig, {"dropout": "lots"})
