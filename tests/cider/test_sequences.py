"""CIDer on real sequences: the MELD dialogue OOD split, counterfactual texts through the real text
encoder, MACI fitted on a CIDer trained on real MELD token features, and the variant trainer."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from models.labels import normalise_label
from training.data.dataset import Normalizer, Sample

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CLASSES = ("ang", "hap", "neu", "sad")


@pytest.fixture(scope="module")
def meld() -> list:
    """MELD utterances of the four classes, as the corpus loader lists them (official splits)."""
    if not (DATA / "meld-text").is_dir():
        pytest.skip("the real corpus copies (shared/data next to the repository) are not on this machine")
    from training.data.corpus import list_corpus

    out = []
    for u in list_corpus("meld", DATA / "meld-text"):
        lab = normalise_label(u.label)
        if lab in CLASSES and u.transcript:
            out.append((u, CLASSES.index(lab)))
    return out


def test_ood_dialogue_split_moves_whole_dialogues_and_shifts_labels_and_words(meld: list) -> None:
    from training.evaluation.ood_dialogues import ood_dialogue_split

    samples = [Sample(id=u.id, group=u.group, label=y) for u, y in meld]
    texts = {u.id: u.transcript for u, _ in meld}
    sp = ood_dialogue_split(samples, texts, len(CLASSES), test_fraction=0.3, seed=0)
    sides = [{s.group for s in part} for part in (sp.train, sp.val, sp.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert len(sp.train) + len(sp.val) + len(sp.test) == len(samples)
    assert 0.29 <= len(sp.test) / len(samples) <= 0.33
    d = sp.description
    neu = CLASSES.index("neu")
    assert d["majority_class"] == neu  # MELD: neutral is about half of the four-class labels
    assert d["label_dist_train"][neu] > d["label_dist_test"][neu] + 0.15  # train leans neutral
    assert d["label_tv_distance"] > 0.15
    # words that carry the label in train carry it less in test
    assert d["bias_conflict_rate_test"] > d["bias_conflict_rate_train"] + 0.1
    assert d["lexical_accuracy_test"] < d["lexical_accuracy_train"] - 0.1
    assert d["n_bias_words_train"] > 0 and d["bias_word_tv_distance"] > 0.0
    # validation is drawn from the training side: its label mix is the train's, not the test's
    val_neu = Counter(s.label for s in sp.val)[neu] / len(sp.val)
    assert abs(val_neu - d["label_dist_train"][neu]) < abs(val_neu - d["label_dist_test"][neu])
    again = ood_dialogue_split(samples, texts, len(CLASSES), test_fraction=0.3, seed=0)
    assert [s.id for s in again.test] == [s.id for s in sp.test]  # deterministic


def test_counterfactual_text_keeps_only_bias_words_through_the_real_encoder() -> None:
    from models.encoders.text import TextEncoder
    from training.fit.maci import counterfactual_transcript, encode_counterfactuals

    assert counterfactual_transcript("Oh my God, I love it!", {"love", "god"}, "[MASK]") == (
        "[MASK] [MASK] god [MASK] love [MASK]"
    )
    enc = TextEncoder()
    texts = ["Oh my God, I love it!", "Where is the remote?"]
    norm = Normalizer.identity({"text": enc.dim, "audio": 1, "video": 1})
    cf = encode_counterfactuals(texts, {"love"}, enc, norm)
    full = [f[m] for f, m in zip(*enc.encode(texts), strict=True)]
    assert [x.shape for x in cf] == [(8, enc.dim), (6, enc.dim)]  # [CLS] + one token per word + [SEP]
    assert not np.allclose(cf[0], full[0][: len(cf[0])])  # the counterfactual reads differently
    masked_only = enc.encode(["[MASK] [MASK] [MASK] [MASK]"])[0][0]
    assert np.allclose(cf[1], masked_only, atol=1e-5)  # no bias word: nothing but masks is left


def test_maci_on_a_cider_trained_on_real_meld_tokens(meld: list) -> None:
    from models.cider import select_bias_words
    from models.encoders.text import TextEncoder
    from training.fit.maci import Split, encode_counterfactuals, fit_maci, pad
    from training.loop.variants import batches_of, build_variant, length_order, load_items, train_variant

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    pick = {k: [m for m in meld if m[0].split == k] for k in ("train", "val", "test")}
    pick = {
        k: [v[i] for i in rng.permutation(len(v))[:n]]
        for (k, v), n in zip(pick.items(), (240, 96, 96), strict=True)
    }
    enc = TextEncoder()
    dims = {"text": enc.dim, "audio": 4, "video": 4}
    samples: dict[str, list[Sample]] = {}
    for k, rows in pick.items():
        feats, mask = enc.encode([u.transcript for u, _ in rows])
        samples[k] = [
            Sample(
                u.id,
                u.group,
                y,
                features={
                    "text": f[m],
                    "audio": np.zeros((0, 4), np.float32),
                    "video": np.zeros((0, 4), np.float32),
                },
            )
            for (u, y), f, m in zip(rows, feats, mask, strict=True)
        ]
    norm = Normalizer.fit(samples["train"], dims)
    items = {k: load_items(v, dims, norm) for k, v in samples.items()}
    section = {"d_model": 16, "mct_heads": 2, "mct_layers": 1, "dropout": 0.0}
    adapter, model = build_variant("cider", dims, CLASSES, {}, section)
    stats = train_variant(
        "cider", adapter, model, items["train"], batches_of(items["val"]), 4, epochs=3, seed=0
    )
    assert stats.val_uar == max(stats.val_uar_by_epoch) and 1 <= stats.best_epoch <= 3
    texts = {u.id: u.transcript for rows in pick.values() for u, _ in rows}
    train_texts = [texts[s.id] for s in samples["train"]]
    bias = set(select_bias_words(train_texts, [s.label for s in samples["train"]], 4, min_count=3))

    def split(k: str) -> Split:
        order = length_order(items[k])
        cf = encode_counterfactuals([texts[s.id] for s in samples[k]], bias, enc, norm)
        b = batches_of(items[k], 32, order)
        return Split(b, [pad([cf[i] for i in order[s : s + 32]], enc.dim) for s in range(0, len(order), 32)])

    out = fit_maci(
        model, split("train"), split("val"), {"test": split("test")}, train_texts, 4, seed=0, head_epochs=5
    )
    table = out["val_uar_by_tau"]
    assert out["tau"] == min(t for t, v in table.items() if v == max(table.values()))  # chosen on validation
    for k in ("val", "test"):
        assert set(out[k]) == {"plain", "backdoor", "maci"}
        assert all(0.0 <= r["uar"] <= 1.0 and 0.0 <= r["war"] <= 1.0 for r in out[k].values())
    assert out["val"]["maci"]["uar"] == pytest.approx(table[out["tau"]])
    assert 0 < out["extra_parameters"] < 20000


def test_bucketed_batches_cover_every_item_once_with_similar_lengths() -> None:
    from training.loop.variants import bucketed_batches

    lengths = np.random.default_rng(0).integers(1, 200, size=300)
    items = [{"audio": np.zeros(n), "text": np.zeros(3), "video": np.zeros(1)} for n in lengths]
    torch.manual_seed(0)
    batches = bucketed_batches(items, 16, pool=4)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(300))
    spread = np.mean([np.ptp(lengths[b]) for b in batches if len(b) > 1])
    assert spread < 0.5 * np.ptp(lengths)  # far less padding than random batches


def test_the_benchmark_names_a_missing_feature_store(tmp_path: Path) -> None:
    from benchmarks.cider_sequences import main

    with pytest.raises(SystemExit, match="is not a feature store; build it with `make train-offline"):
        main(["--store", str(tmp_path), "--json", str(tmp_path / "out.json")])
