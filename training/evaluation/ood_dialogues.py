"""An OOD repartition of a dialogue corpus (MELD) in CIDer's manner: whole dialogues move, so that the
label distribution and the words that go with each label differ between train and test.

All utterances of the official splits are pooled. Each utterance gets a words-only naive-Bayes reading
(per class, the sum over its distinct words of log P(w | c) - log P(w), document frequencies with add-one
smoothing, words in at least ``min_count`` utterances); it is *bias-conflicting* when that reading's
argmax is not its label. Each dialogue scores

    (1 - its fraction of the majority class) + its fraction of bias-conflicting utterances

and dialogues move to test in decreasing score (ties by id) until test holds ``test_fraction`` of the
utterances. Train therefore leans to the majority class (neutral in MELD) and its word shortcuts, test to
the other classes and to utterances whose words point elsewhere. Validation is a seeded fraction of the
remaining dialogues (the training distribution: nothing of the test distribution is seen before test).

The text features (MiniLM token states) come from a model that never saw MELD, so pooling the official
splits leaks nothing. The pooled word statistics only BUILD the split; bias words for MACI are chosen
from the OOD train transcripts alone. ``describe`` reports priors, conflict rates under the TRAIN word
statistics, and the total-variation distance of the bias-word distributions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.cider.maci import select_bias_words, tokenize
from training.data.dataset import Sample


class WordNB:
    """Words-only multi-class naive Bayes over distinct words (document frequencies, add-one)."""

    def __init__(
        self, texts: Sequence[str], labels: Sequence[int], num_classes: int, min_count: int = 5
    ) -> None:
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        per_class = [Counter() for _ in range(num_classes)]
        total: Counter = Counter()
        n_c = Counter(int(y) for y in labels)
        for t, y in zip(texts, labels, strict=True):
            ws = set(tokenize(t))
            per_class[int(y)].update(ws)
            total.update(ws)
        n = max(len(labels), 1)
        self.num_classes = num_classes
        self.prior = np.array([n_c.get(c, 0) / n for c in range(num_classes)])
        self.lift: dict[str, np.ndarray] = {}
        for w, k in total.items():
            if k < min_count:
                continue
            p_wc = np.array([(per_class[c][w] + 1) / (n_c.get(c, 0) + 2) for c in range(num_classes)])
            self.lift[w] = np.log(p_wc) - math.log((k + 1) / (n + 2))

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """[N, C] summed log-lifts of each text's known words (0 for a text with none)."""
        out = np.zeros((len(texts), self.num_classes))
        for i, t in enumerate(texts):
            for w in set(tokenize(t)):
                v = self.lift.get(w)
                if v is not None:
                    out[i] += v
        return out

    def conflicting(self, texts: Sequence[str], labels: Sequence[int]) -> np.ndarray:
        """[N] bool: texts with known words whose lexical argmax is not the label."""
        s = self.scores(texts)
        has = np.abs(s).sum(axis=1) > 0
        return has & (s.argmax(axis=1) != np.asarray(labels))


@dataclass
class DialogueSplit:
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    description: dict[str, Any] = field(default_factory=dict)


def ood_dialogue_split(
    samples: Sequence[Sample],
    transcripts: dict[str, str],
    num_classes: int,
    test_fraction: float = 0.3,
    val_fraction: float = 0.15,
    min_count: int = 5,
    seed: int = 0,
) -> DialogueSplit:
    """Repartition ``samples`` (``group`` = dialogue id) into OOD train / validation / test."""
    if not 0.0 < test_fraction < 1.0 or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"fractions must be in (0, 1), got test {test_fraction}, val {val_fraction}")
    missing = [s.id for s in samples if not transcripts.get(s.id)]
    if missing:
        raise ValueError(f"{len(missing)} samples have no transcript, e.g. {missing[:3]}")
    labels = [s.label for s in samples]
    texts = [transcripts[s.id] for s in samples]
    majority = Counter(labels).most_common(1)[0][0]
    conflict = WordNB(texts, labels, num_classes, min_count).conflicting(texts, labels)
    per: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        per.setdefault(s.group, []).append(i)
    if len(per) < 3:
        raise ValueError(f"need at least 3 dialogues to split, got {len(per)}")
    score = {
        g: float(1.0 - np.mean([labels[i] == majority for i in idx]) + np.mean(conflict[idx]))
        for g, idx in per.items()
    }
    target = test_fraction * len(samples)
    test_groups: set[str] = set()
    count = 0
    for g in sorted(per, key=lambda g: (-score[g], g)):
        if count >= target:
            break
        test_groups.add(g)
        count += len(per[g])
    rest = sorted(g for g in per if g not in test_groups)
    order = np.random.default_rng(seed).permutation(len(rest))
    n_val = max(1, int(round(val_fraction * len(rest))))
    val_groups = {rest[int(i)] for i in order[:n_val]}
    train = [s for s in samples if s.group not in test_groups and s.group not in val_groups]
    val = [s for s in samples if s.group in val_groups]
    test = [s for s in samples if s.group in test_groups]
    desc = {
        "rule": "whole dialogues to test by decreasing (1 - majority-class fraction) + bias-conflicting "
        "fraction (pooled words-only naive Bayes), until test_fraction of the utterances; validation: "
        "a seeded fraction of the remaining dialogues",
        "test_fraction": test_fraction,
        "val_fraction": val_fraction,
        "min_count": min_count,
        "seed": seed,
        "majority_class": int(majority),
        "dialogues": {
            "train": len({s.group for s in train}),
            "val": len(val_groups),
            "test": len(test_groups),
        },
        **describe(train, test, transcripts, num_classes, min_count),
    }
    return DialogueSplit(train, val, test, desc)


def describe(
    train: Sequence[Sample],
    test: Sequence[Sample],
    transcripts: dict[str, str],
    num_classes: int,
    min_count: int = 5,
) -> dict[str, Any]:
    """Label distributions, conflict rates and lexical accuracy under TRAIN word statistics, and the
    total-variation distance between the train and test distributions of the train bias words."""
    tr_t, te_t = [transcripts[s.id] for s in train], [transcripts[s.id] for s in test]
    tr_y, te_y = [s.label for s in train], [s.label for s in test]
    nb = WordNB(tr_t, tr_y, num_classes, min_count)
    bias = set(select_bias_words(tr_t, tr_y, num_classes))

    def dist(ys: list[int]) -> list[float]:
        c = Counter(ys)
        return [c.get(k, 0) / max(len(ys), 1) for k in range(num_classes)]

    def lexical_acc(texts: list[str], ys: list[int]) -> float:
        pred = (nb.scores(texts) + np.log(np.clip(nb.prior, 1e-9, 1.0))).argmax(axis=1)
        return float(np.mean(pred == np.asarray(ys))) if ys else 0.0

    def bias_counts(texts: list[str]) -> Counter:
        c: Counter = Counter()
        for t in texts:
            c.update(w for w in set(tokenize(t)) if w in bias)
        return c

    a, b = bias_counts(tr_t), bias_counts(te_t)
    na, nb_ = max(sum(a.values()), 1), max(sum(b.values()), 1)
    tv = 0.5 * sum(abs(a[w] / na - b[w] / nb_) for w in set(a) | set(b))
    return {
        "n_train": len(train),
        "n_test": len(test),
        "label_dist_train": dist(tr_y),
        "label_dist_test": dist(te_y),
        "label_tv_distance": 0.5 * float(np.abs(np.subtract(dist(tr_y), dist(te_y))).sum()),
        "bias_conflict_rate_train": float(np.mean(nb.conflicting(tr_t, tr_y))) if tr_y else 0.0,
        "bias_conflict_rate_test": float(np.mean(nb.conflicting(te_t, te_y))) if te_y else 0.0,
        "lexical_accuracy_train": lexical_acc(tr_t, tr_y),
        "lexical_accuracy_test": lexical_acc(te_t, te_y),
        "n_bias_words_train": len(bias),
        "bias_word_tv_distance": float(tv),
    }
