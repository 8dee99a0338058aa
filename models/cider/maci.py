"""MACI: model-agnostic causal inference, a plug-in wrapper for any fusion model.

Imports only torch (and the standard library for word statistics). The wrapped base model must take
``(text, text_mask, audio, audio_mask, video, video_mask, avail)`` and return an output with a joint
representation ``h`` [B, F] (``.representation`` by default; any getter can be passed).

Label bias (backdoor adjustment). The multimodal causal module (MCM) scores the representation against
each class prototype p_c (the class-mean training representation):

    p(y | do(x)) = sum_c P(c) * softmax(f([h; g(p_c)]))_y

During training P(c) is the training label prior; at test it is uniform, which cuts the path from the
training label prior to the prediction.

Language bias. A counterfactual text keeps only the "bias words" (frequent training words whose class
distribution is skewed) and masks every other word. The model's prediction from that text alone,
p(y | x_cf), measures how much the words by themselves push the decision, and the final score is

    score = log p(y | x) - tau * log p(y | x_cf)

``tau`` must be chosen on validation data (the public code picks it on test, which is optimistic).
For token-id inputs the counterfactual replaces non-bias tokens with [MASK] (``counterfactual_token_ids``);
for feature-level text, ``LinearTextProxy`` embeds the bias words of a transcript in the text feature space.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_WORD = re.compile(r"[a-z']+")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (letters and apostrophes)."""
    return _WORD.findall(text.lower())


# --------------------------------------------------------------------------------------------------
# Bias words from training statistics
# --------------------------------------------------------------------------------------------------
@dataclass
class BiasWordStats:
    word: str
    count: int  # number of training utterances containing the word
    class_dist: tuple[float, ...]  # add-one smoothed P(c | word)
    skew: float  # max_c P(c | word) - P(c): how far the word pulls towards one class


def word_statistics(
    texts: Sequence[str], labels: Sequence[int], num_classes: int
) -> tuple[list[BiasWordStats], list[float]]:
    """Per-word document counts and smoothed class distributions, and the label prior P(c)."""
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    prior_counts = Counter(int(y) for y in labels)
    n = max(len(labels), 1)
    prior = [prior_counts.get(c, 0) / n for c in range(num_classes)]
    by_word: dict[str, list[int]] = {}
    for t, y in zip(texts, labels, strict=True):
        for w in set(tokenize(t)):
            by_word.setdefault(w, [0] * num_classes)[int(y)] += 1
    stats = []
    for w, counts in by_word.items():
        total = sum(counts)
        dist = tuple((k + 1) / (total + num_classes) for k in counts)
        skew = max(dist[c] - prior[c] for c in range(num_classes))
        stats.append(BiasWordStats(w, total, dist, skew))
    stats.sort(key=lambda s: (-s.skew, -s.count, s.word))
    return stats, prior


def select_bias_words(
    texts: Sequence[str], labels: Sequence[int], num_classes: int, min_count: int = 10, min_skew: float = 0.15
) -> list[str]:
    """Frequent words whose class distribution is skewed, from TRAINING texts only.

    A word is a bias word when it occurs in at least ``min_count`` training utterances and its smoothed
    class distribution exceeds the label prior by at least ``min_skew`` for some class. Returned sorted
    by decreasing skew (ties: more frequent first, then alphabetical).
    """
    stats, _ = word_statistics(texts, labels, num_classes)
    return [s.word for s in stats if s.count >= min_count and s.skew >= min_skew]


def counterfactual_token_ids(
    ids: torch.Tensor,
    valid: torch.Tensor,
    bias_ids: Iterable[int],
    mask_id: int,
    special_ids: Iterable[int] = (),
) -> torch.Tensor:
    """Counterfactual token ids: keep special and bias tokens, replace every other valid token by
    ``mask_id`` ([MASK], 103 in BERT's vocabulary). ids, valid: [B, L]; padding is left unchanged."""
    keep = torch.zeros_like(ids, dtype=torch.bool)
    for t in set(int(i) for i in bias_ids) | set(int(i) for i in special_ids):
        keep |= ids == t
    return torch.where(valid.to(torch.bool) & ~keep, torch.full_like(ids, mask_id), ids)


class LinearTextProxy(nn.Module):
    """Bag-of-words -> text feature map for feature-level text (one vector per utterance).

    When the text extractor cannot be re-run on a counterfactual transcript (e.g. the bundled MOSI CNN
    features), a ridge regression from word counts to the real text features stands in for it. The
    counterfactual feature of an utterance is the map applied to the counts of its bias words only.
    """

    def __init__(self, vocab: Sequence[str], weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        if weight.shape[0] != len(vocab):
            raise ValueError(f"weight has {weight.shape[0]} rows but vocab has {len(vocab)} words")
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.register_buffer("weight", weight.to(torch.float32))  # [V, D]
        self.register_buffer("bias", bias.to(torch.float32))  # [D]

    def counts(self, texts: Sequence[str], keep: set[str] | None = None) -> torch.Tensor:
        """[B, V] word counts, restricted to ``keep`` when given (the counterfactual)."""
        out = torch.zeros(len(texts), len(self.vocab))
        for b, t in enumerate(texts):
            for w in tokenize(t):
                if w in self.index and (keep is None or w in keep):
                    out[b, self.index[w]] += 1.0
        return out

    def forward(self, texts: Sequence[str], keep: set[str] | None = None) -> torch.Tensor:
        return self.counts(texts, keep) @ self.weight + self.bias  # [B, D]


# --------------------------------------------------------------------------------------------------
# The wrapper
# --------------------------------------------------------------------------------------------------
@dataclass
class MACIConfig:
    rep_dim: int  # F, size of the base model's joint representation
    num_classes: int
    proto_dim: int = 32  # width of g(prototype)
    hidden: int = 64
    tau: float = 0.0  # language-bias strength; set from validation (see training.evaluation.ood.choose_tau)
    # Counterfactual pass: text only (avail = (1, 0, 0)), i.e. what the bias words alone say. With True,
    # audio and video stay available and only the text is replaced.
    cf_keep_other: bool = False

    def __post_init__(self) -> None:
        if self.rep_dim < 1 or self.proto_dim < 1 or self.hidden < 1:
            raise ValueError(
                f"rep_dim/proto_dim/hidden must be positive, got {self.rep_dim}/{self.proto_dim}/"
                f"{self.hidden}"
            )
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.tau < 0:
            raise ValueError(f"tau must be >= 0, got {self.tau}")


@dataclass
class MACIOutput:
    logits: torch.Tensor  # [B, C] the debiased score log p(y|do(x)) - tau * log p(y|x_cf)
    log_probs: torch.Tensor  # [B, C] log p(y | do(x)) under the prior in use
    cf_log_probs: torch.Tensor | None  # [B, C] log p(y | x_cf), when a counterfactual text was given
    representation: torch.Tensor  # [B, F] the base model's joint representation
    base: Any  # the base model's own output


def _default_rep(out: Any) -> torch.Tensor:
    return out.representation


class MACI(nn.Module):
    """Wraps ``base``; adds the MCM head (g, f) and the prototype/prior buffers (a few thousand weights)."""

    def __init__(
        self,
        base: nn.Module,
        config: MACIConfig,
        get_representation: Callable[[Any], torch.Tensor] = _default_rep,
    ) -> None:
        super().__init__()
        self.base = base
        self.config = c = config
        self.get_representation = get_representation
        self.g = nn.Linear(c.rep_dim, c.proto_dim)
        self.f = nn.Sequential(
            nn.LayerNorm(c.rep_dim + c.proto_dim),
            nn.Linear(c.rep_dim + c.proto_dim, c.hidden),
            nn.GELU(),
            nn.Linear(c.hidden, c.num_classes),
        )
        self.register_buffer("prototypes", torch.zeros(c.num_classes, c.rep_dim))  # [C, F]
        self.register_buffer("train_prior", torch.full((c.num_classes,), 1.0 / c.num_classes))  # [C]

    @torch.no_grad()
    def set_statistics(self, representations: torch.Tensor, labels: torch.Tensor) -> None:
        """Class prototypes (class-mean representation) and the label prior, from TRAINING data."""
        C = self.config.num_classes
        counts = torch.bincount(labels.long(), minlength=C).to(representations.dtype)
        if bool((counts == 0).any()):
            raise ValueError(
                f"every class needs training samples for its prototype; counts {counts.tolist()}"
            )
        sums = torch.zeros(C, representations.shape[1], dtype=representations.dtype)
        sums.index_add_(0, labels.long(), representations)
        self.prototypes.copy_(sums / counts.unsqueeze(1))
        self.train_prior.copy_(counts / counts.sum())

    def prior(self) -> torch.Tensor:
        """P(c): the training prior while training, uniform at test."""
        if self.training:
            return self.train_prior
        return torch.full_like(self.train_prior, 1.0 / self.config.num_classes)

    def head_log_probs(self, h: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """log sum_c P(c) softmax(f([h; g(p_c)])): h [B, F] -> [B, C]."""
        prior = self.prior() if prior is None else prior
        C = self.config.num_classes
        gp = self.g(self.prototypes)  # [C, P]
        hh = h.unsqueeze(1).expand(-1, C, -1)  # [B, C(prototype), F]
        z = torch.cat([hh, gp.unsqueeze(0).expand(h.shape[0], -1, -1)], dim=-1)
        logp = F.log_softmax(self.f(z), dim=-1)  # [B, C(prototype), C(class)]
        return torch.logsumexp(logp + torch.log(prior.clamp(min=1e-12)).view(1, C, 1), dim=1)

    def score(
        self, log_probs: torch.Tensor, cf_log_probs: torch.Tensor | None, tau: float | None = None
    ) -> torch.Tensor:
        tau = self.config.tau if tau is None else tau
        if cf_log_probs is None or tau == 0.0:
            return log_probs
        return log_probs - tau * cf_log_probs

    def counterfactual_avail(self, avail: torch.Tensor) -> torch.Tensor:
        if self.config.cf_keep_other:
            return avail
        keep_text = torch.zeros_like(avail)
        keep_text[:, 0] = 1.0
        return keep_text

    def forward(
        self,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        audio: torch.Tensor,
        audio_mask: torch.Tensor,
        video: torch.Tensor,
        video_mask: torch.Tensor,
        avail: torch.Tensor,
        present: torch.Tensor | None = None,
        text_cf: torch.Tensor | None = None,
        text_cf_mask: torch.Tensor | None = None,
    ) -> MACIOutput:
        """``text_cf`` [B, L_cf, D_t] is the counterfactual text (bias words only); without it the score is
        the backdoor-adjusted prediction alone."""
        base_out = self.base(text, text_mask, audio, audio_mask, video, video_mask, avail)
        h = self.get_representation(base_out)
        log_probs = self.head_log_probs(h)
        cf = None
        if text_cf is not None:
            cf_mask = (
                text_cf_mask
                if text_cf_mask is not None
                else torch.ones(text_cf.shape[:2], dtype=torch.bool, device=text_cf.device)
            )
            cf_out = self.base(
                text_cf, cf_mask, audio, audio_mask, video, video_mask, self.counterfactual_avail(avail)
            )
            cf = self.head_log_probs(self.get_representation(cf_out))
        return MACIOutput(
            logits=self.score(log_probs, cf),
            log_probs=log_probs,
            cf_log_probs=cf,
            representation=h,
            base=base_out,
        )


def entropy_nats(p: Sequence[float]) -> float:
    """Shannon entropy in nats (used to describe label-prior shifts)."""
    return -sum(x * math.log(x) for x in p if x > 0)
