"""Out-of-distribution tools: the OOD repartition of MOSI and the MACI fitting helpers.

OOD split of MOSI (``ood_split``). All utterances of the official train and test sets are pooled and
repartitioned by WHOLE videos (one speaker each, so the split stays speaker independent) so that two
things shift between train and test:

1. the label prior: videos with many positive utterances go to test, so train leans negative and
   test leans positive;
2. the lexical shortcut: each utterance gets a naive-Bayes word score (smoothed per-word log-odds of
   positive vs negative over the pooled transcripts, words seen in >= ``min_count`` utterances). An
   utterance is "bias-conflicting" when the sign of that score disagrees with its label. Videos with many
   conflicting utterances go to test, so words that predict the label in train predict it less in test.

Each video gets the score ``frac_positive + frac_conflicting`` and videos are moved to test in
decreasing score (ties by video id) until test holds ``test_fraction`` of the candidate utterances.
``test_pool`` restricts which videos may go to test. On the bundled MOSI features it must be the
official test videos: the train-split features come from extractors fitted on those very utterances
(a linear model on held-out TRAIN videos scores about 99%, on test videos about 75%), so only test
videos measure generalisation. The remaining official test videos join train (they are also the
only honest material for validation; see ``benchmarks.cider_mosi``). The pooled
statistics are used only to BUILD the split; MACI's bias words are then chosen from the OOD train
transcripts alone. ``describe_shift`` reports the priors, the conflict rates and the total-variation
distance of the bias-word distributions on both sides.

MACI helpers: ``fit_text_proxy`` (ridge regression from word counts to the real text features, the
stand-in text extractor for counterfactual transcripts) and ``choose_tau`` (tau by validation accuracy).
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.cider.maci import LinearTextProxy, tokenize
from training.data.dataset import Sample


def load_transcripts(root: str | Path) -> dict[str, str]:
    """Utterance id -> transcript from ``<root>/transcripts.csv`` (MOSI layout)."""
    path = Path(root) / "transcripts.csv"
    if not path.is_file():
        raise FileNotFoundError(f"transcripts not found: {path} (see data/README.md)")
    with open(path, newline="") as f:
        return {r[0]: r[1] for r in csv.reader(f) if r}


def word_log_odds(texts: Sequence[str], labels: Sequence[int], min_count: int = 5) -> dict[str, float]:
    """Smoothed log P(w | pos) / P(w | neg) (document frequency, add-one) for words in >= min_count texts."""
    pos, neg, tot = Counter(), Counter(), Counter()
    n_pos = sum(1 for y in labels if y == 1)
    n_neg = len(labels) - n_pos
    for t, y in zip(texts, labels, strict=True):
        for w in set(tokenize(t)):
            tot[w] += 1
            (pos if y == 1 else neg)[w] += 1
    return {
        w: math.log((pos[w] + 1) / (n_pos + 2)) - math.log((neg[w] + 1) / (n_neg + 2))
        for w, c in tot.items()
        if c >= min_count
    }


def lexical_scores(texts: Sequence[str], log_odds: dict[str, float]) -> np.ndarray:
    """Naive-Bayes word score of each text (sum of its words' log-odds; unknown words count 0)."""
    return np.array([sum(log_odds.get(w, 0.0) for w in set(tokenize(t))) for t in texts])


@dataclass
class OODSplit:
    train: list[Sample]
    test: list[Sample]
    description: dict[str, Any] = field(default_factory=dict)


def ood_split(
    samples: Sequence[Sample],
    transcripts: dict[str, str],
    test_fraction: float = 0.5,
    min_count: int = 5,
    test_pool: set[str] | None = None,
) -> OODSplit:
    """Repartition binary-labelled samples by whole groups (videos); see the module docstring.

    ``test_pool``: groups allowed in test (None = all); ``test_fraction`` is relative to the pool."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    missing = [s.id for s in samples if s.id not in transcripts]
    if missing:
        raise ValueError(f"{len(missing)} samples have no transcript, e.g. {missing[:3]}")
    labels = [s.label for s in samples]
    if set(labels) - {0, 1}:
        raise ValueError(f"ood_split needs binary labels 0/1, got {sorted(set(labels))}")
    texts = [transcripts[s.id] for s in samples]
    score = lexical_scores(texts, word_log_odds(texts, labels, min_count))
    conflict = (score > 0).astype(int) != np.asarray(labels)
    per: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        per.setdefault(s.group, []).append(i)
    vscore = {g: float(np.mean([labels[i] for i in idx]) + np.mean(conflict[idx])) for g, idx in per.items()}
    pool = set(per) if test_pool is None else set(test_pool) & set(per)
    if not pool:
        raise ValueError("test_pool shares no group with the samples")
    order = sorted(pool, key=lambda g: (-vscore[g], g))
    target = test_fraction * sum(len(per[g]) for g in pool)
    test_groups: set[str] = set()
    count = 0
    for g in order:
        if count >= target or len(test_groups) == len(per) - 1:
            break
        test_groups.add(g)
        count += len(per[g])
    train = [s for s in samples if s.group not in test_groups]
    test = [s for s in samples if s.group in test_groups]
    desc = {
        "rule": "whole videos to test by decreasing frac_positive + frac_bias_conflicting (pooled "
        "naive-Bayes word score), until test_fraction of utterances",
        "test_fraction": test_fraction,
        "min_count": min_count,
        "test_groups": sorted(test_groups),
        "test_pool_groups": len(pool),
        **describe_shift(train, test, transcripts),
    }
    return OODSplit(train=train, test=test, description=desc)


def describe_shift(
    train: Sequence[Sample], test: Sequence[Sample], transcripts: dict[str, str], min_count: int = 5
) -> dict[str, Any]:
    """Label priors, bias-conflict rates (w.r.t. TRAIN word statistics) and the total-variation
    distance between the train and test bias-word distributions."""
    tr_t = [transcripts[s.id] for s in train]
    te_t = [transcripts[s.id] for s in test]
    tr_y = [s.label for s in train]
    te_y = [s.label for s in test]
    lo = word_log_odds(tr_t, tr_y, min_count)

    def conflict_rate(texts: list[str], ys: list[int]) -> float:
        sc = lexical_scores(texts, lo)
        return float(np.mean((sc > 0).astype(int) != np.asarray(ys))) if ys else 0.0

    def word_dist(texts: list[str]) -> Counter:
        c: Counter = Counter()
        for t in texts:
            c.update(w for w in set(tokenize(t)) if w in lo)
        return c

    a, b = word_dist(tr_t), word_dist(te_t)
    p_tr = float(np.mean(tr_y)) if tr_y else 0.5
    prior_lo = math.log(max(p_tr, 1e-6) / max(1.0 - p_tr, 1e-6))

    def lexical_accuracy(texts: list[str], ys: list[int]) -> float:
        """Accuracy of a words-only naive-Bayes classifier fitted on train (with the train prior)."""
        pred = (lexical_scores(texts, lo) + prior_lo > 0).astype(int)
        return float(np.mean(pred == np.asarray(ys))) if ys else 0.0

    na, nb = max(sum(a.values()), 1), max(sum(b.values()), 1)
    tv = 0.5 * sum(abs(a[w] / na - b[w] / nb) for w in set(a) | set(b))
    return {
        "n_train": len(train),
        "n_test": len(test),
        "positive_rate_train": float(np.mean(tr_y)) if tr_y else 0.0,
        "positive_rate_test": float(np.mean(te_y)) if te_y else 0.0,
        "bias_conflict_rate_train": conflict_rate(tr_t, tr_y),
        "bias_conflict_rate_test": conflict_rate(te_t, te_y),
        "bias_word_tv_distance": float(tv),
        "lexical_accuracy_train": lexical_accuracy(tr_t, tr_y),
        "lexical_accuracy_test": lexical_accuracy(te_t, te_y),
        "videos_train": len({s.group for s in train}),
        "videos_test": len({s.group for s in test}),
    }


def fit_text_proxy(
    texts: Sequence[str], features: np.ndarray, min_count: int = 2, ridge: float = 1.0
) -> tuple[LinearTextProxy, float]:
    """Ridge regression word counts [N, V] -> text features [N, D]; returns (proxy, R^2 on the fit data).

    Vocabulary: words in >= ``min_count`` of the texts. Fit on TRAINING texts and their (normalised)
    features only."""
    if len(texts) != len(features):
        raise ValueError(f"{len(texts)} texts but {len(features)} feature rows")
    df = Counter(w for t in texts for w in set(tokenize(t)))
    vocab = sorted(w for w, c in df.items() if c >= min_count)
    proxy = LinearTextProxy(vocab, torch.zeros(len(vocab), features.shape[1]), torch.zeros(features.shape[1]))
    X = proxy.counts(list(texts)).double().numpy()
    Y = np.asarray(features, dtype=np.float64)
    xm, ym = X.mean(axis=0), Y.mean(axis=0)
    Xc, Yc = X - xm, Y - ym
    W = np.linalg.solve(Xc.T @ Xc + ridge * np.eye(X.shape[1]), Xc.T @ Yc)  # [V, D]
    b = ym - xm @ W
    pred = X @ W + b
    r2 = 1.0 - float(((Y - pred) ** 2).sum() / max(((Y - ym) ** 2).sum(), 1e-12))
    return LinearTextProxy(vocab, torch.from_numpy(W).float(), torch.from_numpy(b).float()), r2


def choose_tau(
    log_probs: torch.Tensor,
    cf_log_probs: torch.Tensor,
    labels: torch.Tensor,
    grid: Sequence[float] = tuple(round(0.1 * i, 1) for i in range(11)),
    metric: str = "accuracy",
) -> tuple[float, dict[float, float]]:
    """tau maximising ``metric`` ("accuracy" or "uar") of log p - tau * log p_cf on VALIDATION data
    (ties -> the smallest tau)."""
    if metric not in ("accuracy", "uar"):
        raise ValueError(f"metric must be 'accuracy' or 'uar', got {metric!r}")
    y = labels.cpu().numpy()
    num_classes = int(log_probs.shape[-1])
    table: dict[float, float] = {}
    for tau in grid:
        pred = (log_probs - tau * cf_log_probs).argmax(dim=-1).cpu().numpy()
        if metric == "accuracy":
            table[float(tau)] = float((pred == y).mean())
        else:
            recalls = [float((pred[y == c] == c).mean()) for c in range(num_classes) if (y == c).any()]
            table[float(tau)] = float(np.mean(recalls))
    best = max(table.values())
    return min(t for t, a in table.items() if a == best), table
