"""MACI on a trained, frozen fusion model over token-level text (MELD): counterfactual texts through the
real text encoder, the MCM head, and tau chosen on validation.

* **Counterfactual text.** A transcript keeps only its bias words (``select_bias_words`` on the TRAINING
  transcripts); every other word becomes the encoder's mask token, and the result goes through the same
  text encoder that made the features (MiniLM for the offline profile), then the same normalisation. So
  ``x_cf`` is what the model would read if only the bias words had been said.
* **MCM head.** Class prototypes and the label prior from the training representations; the head
  (``g``, ``f``) is fitted with NLL on them under the training prior, and reads with a uniform prior at
  test (backdoor adjustment).
* **tau.** Chosen on validation UAR over 0.0..1.0 (``training.evaluation.ood.choose_tau``), never on test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.cider import MACI, MACIConfig, select_bias_words
from models.cider.maci import tokenize
from training.data.dataset import Normalizer
from training.evaluation.ood import choose_tau
from training.evaluation.robustness import accuracy_uar


def counterfactual_transcript(text: str, keep: set[str], mask_token: str) -> str:
    """The transcript with every word outside ``keep`` replaced by ``mask_token`` (lower-cased words)."""
    return " ".join(w if w in keep else mask_token for w in tokenize(text))


def encode_counterfactuals(
    texts: Sequence[str], keep: set[str], encoder: Any, norm: Normalizer, batch_size: int = 128
) -> list[np.ndarray]:
    """Normalised [L, D] token features of every counterfactual transcript (``encoder``: TextEncoder)."""
    mask_token = getattr(encoder.tokenizer, "mask_token", None) or "[MASK]"
    cf = [counterfactual_transcript(t, keep, mask_token) for t in texts]
    out: list[np.ndarray] = []
    for s in range(0, len(cf), batch_size):
        feats, mask = encoder.encode(cf[s : s + batch_size])
        out += [norm.apply("text", f[m]) for f, m in zip(feats, mask, strict=True)]
    return out


@dataclass
class Split:
    """One split in evaluation batches, with the counterfactual text of each batch."""

    batches: list[dict[str, Any]]
    cf: list[tuple[torch.Tensor, torch.Tensor]]  # per batch: text_cf [B, L, D], mask [B, L]

    @property
    def labels(self) -> torch.Tensor:
        return torch.cat([b["label"] for b in self.batches])


def pad(seqs: Sequence[np.ndarray], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(1, max(len(s) for s in seqs))
    x = torch.zeros(len(seqs), length, dim)
    m = torch.zeros(len(seqs), length, dtype=torch.bool)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.from_numpy(np.asarray(s, np.float32))
        m[i, : len(s)] = True
    return x, m


def _run(
    model: torch.nn.Module,
    b: dict[str, Any],
    text: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    avail: torch.Tensor | None = None,
) -> Any:
    return model(
        b["text"] if text is None else text,
        b["text_mask"] if mask is None else mask,
        b["audio"],
        b["audio_mask"],
        b["video"],
        b["video_mask"],
        b["avail"] if avail is None else avail,
    )


@torch.no_grad()
def representations(model: torch.nn.Module, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """(h [N, F] on the real input, h_cf [N, F] on the counterfactual text alone)."""
    hs, hcf = [], []
    for b, (t, m) in zip(split.batches, split.cf, strict=True):
        hs.append(_run(model, b).representation)
        text_only = torch.zeros_like(b["avail"])
        text_only[:, 0] = 1.0
        hcf.append(_run(model, b, t, m, text_only).representation)
    return torch.cat(hs), torch.cat(hcf)


def fit_maci(
    model: torch.nn.Module,
    train: Split,
    val: Split,
    tests: dict[str, Split],
    train_texts: Sequence[str],
    num_classes: int,
    seed: int,
    head_epochs: int = 40,
) -> dict[str, Any]:
    """MACI on the frozen ``model``: UAR/WAR on each test split without MACI, with the backdoor
    adjustment only (tau 0), and with the full score at the validation-chosen tau."""
    model.eval()
    reps = {"train": representations(model, train), "val": representations(model, val)}
    reps.update({k: representations(model, s) for k, s in tests.items()})
    y_tr = train.labels
    maci = MACI(model, MACIConfig(rep_dim=reps["train"][0].shape[1], num_classes=num_classes))
    maci.set_statistics(reps["train"][0], y_tr)
    head = [p for n, p in maci.named_parameters() if not n.startswith("base.")]
    opt = torch.optim.Adam(head, lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    n = len(y_tr)
    maci.train()
    for _ in range(head_epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, 128):
            idx = perm[i : i + 128]
            loss = F.nll_loss(maci.head_log_probs(reps["train"][0][idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    maci.eval()
    with torch.no_grad():
        scored = {k: (maci.head_log_probs(h), maci.head_log_probs(hcf)) for k, (h, hcf) in reps.items()}
        base = {k: _base_logits(model, s) for k, s in {"val": val, **tests}.items()}
    tau, table = choose_tau(scored["val"][0], scored["val"][1], val.labels, metric="uar")
    out: dict[str, Any] = {
        "tau": tau,
        "val_uar_by_tau": table,
        "bias_words": select_bias_words(list(train_texts), y_tr.tolist(), num_classes)[:40],
        "extra_parameters": sum(p.numel() for p in head),
    }
    for k, s in {"val": val, **tests}.items():
        y = s.labels.numpy()
        lp, cf = scored[k]
        rows = {"plain": base[k], "backdoor": lp, "maci": lp - tau * cf}
        out[k] = {
            name: dict(zip(("war", "uar"), accuracy_uar(z.argmax(-1).numpy(), y, num_classes), strict=True))
            for name, z in rows.items()
        }
    return out


@torch.no_grad()
def _base_logits(model: torch.nn.Module, split: Split) -> torch.Tensor:
    return torch.cat([_run(model, b).logits for b in split.batches])
