"""CM-ARR losses: L_udcl (Gaussian 2-Wasserstein InfoNCE), L_spcl (SupCon), L_rec, L_cls.

Imports only torch. ``cmarr_loss`` combines them as alpha*L_udcl + beta*L_spcl + lam*L_rec + L_cls
(+ an optional flow NLL); a weight of 0 skips the term's computation entirely.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .configuration_cmarr import LossWeights
from .modeling_cmarr import CMARR, CMARROutput

# (i, j) indices into MODALITY_ORDER = (text, audio, video) for the three pairs s-t, t-v, s-v.
PAIRS: tuple[tuple[int, int], ...] = ((1, 0), (0, 2), (1, 2))


def w2_distance(mu1: torch.Tensor, var1: torch.Tensor, mu2: torch.Tensor, var2: torch.Tensor) -> torch.Tensor:
    """Pairwise squared 2-Wasserstein distance between diagonal Gaussians.

    mu*, var*: [N, g] and [M, g] -> [N, M]. For diagonal covariances
    W2^2 = ||mu1 - mu2||^2 + ||Sigma1^(1/2) - Sigma2^(1/2)||_F^2. The paper writes the second term with
    Sigma itself; the standard closed form uses standard deviations, which is what we compute.
    """
    d_mu = torch.cdist(mu1, mu2, p=2.0) ** 2
    d_sd = torch.cdist(var1.clamp(min=0).sqrt(), var2.clamp(min=0).sqrt(), p=2.0) ** 2
    return d_mu + d_sd


def symmetric_info_nce(logits: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE for an [N, N] similarity matrix whose diagonal holds the positives.

    Returns L^{m->n} + L^{n->m} (paper eq. 2), each averaged over the batch.
    """
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)


def udcl_loss(model: CMARR, out: CMARROutput) -> torch.Tensor:
    """L_udcl summed over the pairs (s,t), (t,v), (s,v), using only samples where both are present.

    S = a*D + b with a = -softplus(a_raw) < 0 and a learned shift b, divided by tau = exp(log_tau).
    Note: a shift common to a row cancels inside the softmax, so b does not change the loss; it is kept
    because the paper defines it and it is harmless.
    """
    total = out.logits.new_zeros(())
    for p, (i, j) in enumerate(PAIRS):
        both = (out.present[:, i] > 0.5) & (out.present[:, j] > 0.5)
        if int(both.sum()) < 2:
            continue
        d = w2_distance(out.mu[both, i], out.var[both, i], out.mu[both, j], out.var[both, j])
        a = -F.softplus(model.udcl_a[p]) - 1e-4
        tau = model.udcl_log_tau[p].exp().clamp(min=1e-2)
        total = total + symmetric_info_nce((a * d + model.udcl_b[p]) / tau)
    return total


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out form).

    features: [N, f] (L2-normalised inside), labels: [N]. For anchor i with positives P(i) (same label,
    j != i) L_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p/T) / sum_{a != i} exp(z_i.z_a/T) ).
    Anchors without positives are skipped; returns 0 when no anchor has one.
    """
    z = F.normalize(features, dim=-1)
    sim = z @ z.t() / temperature
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels.view(-1, 1) == labels.view(1, -1)) & ~eye
    n_pos = pos.sum(dim=1)
    has = n_pos > 0
    if not bool(has.any()):
        return features.new_zeros(())
    mean_log_pos = torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(dim=1)[has] / n_pos[has]
    return -mean_log_pos.mean()


def spcl_loss(out: CMARROutput, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """L_spcl over modality representations: the pooled fused feature of every modality of every
    sample is one point; same emotion label (across instances and modalities) = positive."""
    reps = out.features.mean(dim=2)  # [B, 3, d]
    b = reps.shape[0]
    return supcon_loss(reps.reshape(b * 3, -1), labels.repeat_interleave(3), temperature)


def reconstruction_loss(out: CMARROutput) -> torch.Tensor:
    """L_rec = ||X^ - X||^2 where the ground truth is known: modalities hidden from fusion (avail=0)
    but present in the data. Mean squared error per element (the paper's Frobenius norm divided by
    the element count, so lambda does not depend on K or d). The target is stop-gradient, which stops
    the projection from collapsing to make reconstruction trivial."""
    sel = (out.present > 0.5) & (out.avail < 0.5)  # [B, 3]
    if not bool(sel.any()):
        return out.logits.new_zeros(())
    err = (out.reconstructed - out.projected.detach()).pow(2).mean(dim=(2, 3))  # [B, 3]
    return err[sel].mean()


def flow_nll_loss(out: CMARROutput) -> torch.Tensor:
    """Mean per-dimension negative log-likelihood of present modalities' latents under N(0, I)."""
    sel = out.present > 0.5
    if not bool(sel.any()):
        return out.logits.new_zeros(())
    k, d = out.latents.shape[2], out.latents.shape[3]
    nll = 0.5 * out.latents.pow(2).sum(dim=(2, 3)) + 0.5 * k * d * math.log(2 * math.pi) - out.logdet
    return (nll / (k * d))[sel].mean()


def cmarr_loss(model: CMARR, out: CMARROutput, labels: torch.Tensor,
               weights: LossWeights | None = None) -> dict[str, torch.Tensor]:
    """Total loss and each term (terms with weight 0 are reported as 0 and not computed)."""
    w = weights or model.config.losses
    zero = out.logits.new_zeros(())
    terms = {
        "cls": F.cross_entropy(out.logits, labels),
        "udcl": udcl_loss(model, out) if w.alpha > 0 else zero,
        "spcl": spcl_loss(out, labels, w.spcl_temperature) if w.beta > 0 else zero,
        "rec": reconstruction_loss(out) if w.lam > 0 else zero,
        "flow_nll": flow_nll_loss(out) if w.flow_nll > 0 else zero,
    }
    terms["total"] = (terms["cls"] + w.alpha * terms["udcl"] + w.beta * terms["spcl"]
                      + w.lam * terms["rec"] + w.flow_nll * terms["flow_nll"])
    return terms
