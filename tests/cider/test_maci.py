"""MACI wrapper, bias words, counterfactual text, tau selection and the OOD split on real MOSI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.cider import MACI, CIDer, CIDerConfig, MACIConfig, counterfactual_token_ids, select_bias_words
from models.cider.maci import word_statistics
from training.evaluation.ood import choose_tau, fit_text_proxy, load_transcripts, ood_split

MOSI = Path(__file__).resolve().parents[2] / "data" / "mosi-trimodal"


def test_bias_words_from_training_statistics() -> None:
    texts = ["good movie", "really good", "good fun", "bad plot", "the plot", "the movie"]
    labels = [1, 1, 1, 0, 0, 0]
    # "good": 3 positive / 0 negative -> P(pos|good) = 4/5, prior 0.5, skew 0.3.
    stats, prior = word_statistics(texts, labels, 2)
    by = {s.word: s for s in stats}
    assert prior == [0.5, 0.5] and by["good"].count == 3
    assert by["good"].class_dist == pytest.approx((0.2, 0.8)) and by["good"].skew == pytest.approx(0.3)
    # "plot" and "the": 0 positive / 2 negative -> P(neg|w) = 3/4, skew 0.25 (tie: alphabetical).
    assert select_bias_words(texts, labels, 2, min_count=2, min_skew=0.2) == ["good", "plot", "the"]
    assert select_bias_words(texts, labels, 2, min_count=2, min_skew=0.26) == ["good"]
    assert select_bias_words(texts, labels, 2, min_count=3, min_skew=0.2) == ["good"]


def test_counterfactual_token_ids_small_case() -> None:
    ids = torch.tensor([[101, 2204, 3185, 2003, 102, 0]])  # [CLS] good movie is [SEP] [PAD]
    valid = ids != 0
    cf = counterfactual_token_ids(ids, valid, bias_ids=[2204], mask_id=103, special_ids=[101, 102])
    assert cf.tolist() == [[101, 2204, 103, 103, 102, 0]]


def _maci() -> MACI:
    cfg = CIDerConfig(
        text_dim=6,
        audio_dim=5,
        video_dim=4,
        num_classes=2,
        class_names=("n", "p"),
        d_model=8,
        mct_heads=2,
        mct_layers=1,
        dropout=0.0,
    )
    return MACI(CIDer(cfg), MACIConfig(rep_dim=24, num_classes=2, proto_dim=4, hidden=8))


def test_backdoor_adjustment_prior_and_prototypes() -> None:
    maci = _maci()
    reps = torch.tensor([[1.0] * 24, [3.0] * 24, [10.0] * 24])
    maci.set_statistics(reps, torch.tensor([0, 0, 1]))
    assert torch.allclose(maci.prototypes[0], torch.full((24,), 2.0))
    assert torch.allclose(maci.train_prior, torch.tensor([2 / 3, 1 / 3]))
    maci.train()
    assert torch.allclose(maci.prior(), torch.tensor([2 / 3, 1 / 3]))
    maci.eval()
    assert torch.allclose(maci.prior(), torch.tensor([0.5, 0.5]))  # uniform at test
    h = torch.randn(5, 24)
    per_proto = torch.stack(
        [
            torch.softmax(maci.f(torch.cat([h, maci.g(maci.prototypes[c]).expand(5, -1)], -1)), -1)
            for c in range(2)
        ],
        1,
    )  # [B, C(prototype), C]
    expect = (per_proto * torch.tensor([0.3, 0.7]).view(1, 2, 1)).sum(1).log()
    assert torch.allclose(maci.head_log_probs(h, torch.tensor([0.3, 0.7])), expect, atol=1e-6)
    with pytest.raises(ValueError, match="every class"):
        maci.set_statistics(reps, torch.tensor([0, 0, 0]))


def test_language_bias_score_and_counterfactual_pass() -> None:
    maci = _maci().eval()
    maci.set_statistics(torch.randn(4, 24), torch.tensor([0, 1, 0, 1]))
    B = 3
    x = [
        torch.randn(B, 2, 6),
        torch.ones(B, 2, dtype=torch.bool),
        torch.randn(B, 3, 5),
        torch.ones(B, 3, dtype=torch.bool),
        torch.randn(B, 1, 4),
        torch.ones(B, 1, dtype=torch.bool),
        torch.ones(B, 3),
    ]
    cf = torch.randn(B, 1, 6)
    maci.config.tau = 0.5
    out = maci(*x, text_cf=cf)
    assert torch.allclose(out.logits, out.log_probs - 0.5 * out.cf_log_probs)
    # The counterfactual pass sees the counterfactual text only (audio/video unavailable).
    base_cf = maci.base(
        cf, torch.ones(B, 1, dtype=torch.bool), x[2], x[3], x[4], x[5], torch.tensor([[1.0, 0.0, 0.0]] * B)
    )
    assert torch.allclose(out.cf_log_probs, maci.head_log_probs(base_cf.representation), atol=1e-6)
    assert torch.allclose(maci(*x).logits, out.log_probs)  # no counterfactual: backdoor score only


def test_choose_tau_uses_validation_and_prefers_small_tau() -> None:
    lp = torch.log(torch.tensor([[0.6, 0.4], [0.45, 0.55], [0.7, 0.3]]))
    cf = torch.log(torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]]))
    y = torch.tensor([1, 1, 0])
    tau, table = choose_tau(lp, cf, y, grid=(0.0, 0.5, 1.0))
    # tau 0: preds [0, 1, 0] -> 2/3; tau 0.5: sample 0 -> log .6 - .5 log .9 < log .4 - .5 log .1 -> 1 -> 3/3
    assert table[0.0] == pytest.approx(2 / 3) and table[0.5] == pytest.approx(1.0)
    assert tau == 0.5


def test_ood_split_and_text_proxy_on_real_mosi() -> None:
    from training.data.mosi import load_mosi

    data = load_mosi(MOSI)
    tr = load_transcripts(MOSI)
    pool = {s.group for s in data.test}
    o = ood_split(data.train + data.val + data.test, tr, test_fraction=0.5, test_pool=pool)
    d = o.description
    assert not ({s.group for s in o.train} & {s.group for s in o.test})  # whole videos
    assert {s.group for s in o.test} <= pool
    assert d["n_train"] + d["n_test"] == 2199
    assert d["positive_rate_test"] - d["positive_rate_train"] > 0.15  # label prior shifts
    assert d["bias_conflict_rate_test"] - d["bias_conflict_rate_train"] > 0.1  # word shortcut shifts
    assert d["lexical_accuracy_train"] - d["lexical_accuracy_test"] > 0.1
    texts = [tr[s.id] for s in data.train]
    feats = torch.cat([torch.from_numpy(s.features["text"]) for s in data.train]).numpy()
    proxy, r2 = fit_text_proxy(texts, feats)
    assert 0.2 < r2 < 1.0
    assert proxy(["this movie was great"]).shape == (1, 100)
    assert torch.allclose(proxy(["zzqx"]), proxy.bias.unsqueeze(0))  # unknown words -> the intercept
