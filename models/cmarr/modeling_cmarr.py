"""CM-ARR: cross-modal alignment, reconstruction and refinement for missing-modality emotion recognition.

Imports only torch. Shapes: B batch, L_n input length of modality n, D_n its feature size, K the common
segment grid (``config.num_segments``), d the model width, C classes. Modality order is (text, audio,
video) everywhere; ``avail`` is a [B, 3] float mask (1 = use, 0 = missing, reconstruct it).

Decisions where the paper is silent or ambiguous (also listed in README.md):

* Sequence lengths. The paper averages latents of different modalities (eq. 7) without saying how
  sequences of different lengths line up. Every modality is projected by a 1-D convolution and then
  pooled onto K temporal segments with masked adaptive average pooling, so slot k of every modality
  covers the same fraction of the window. Flows, latent transfer, reconstruction and fusion run on this
  [B, K, d] grid, and any input lengths (including 1) are served by one graph.
* Fusion. The paper's text says "three cross-modal attention blocks and one self-attention block" but
  its equations (10-13) write two. We implement the equations: H_tv = CA(Q=X^_t, KV=X_v),
  H_ta = CA(Q=X^_t, KV=X_a), H = SA(concat_channels[H_tv, H_ta]), mean-pool, classify.
* Flows. Each step is ActNorm -> fixed random channel permutation -> affine coupling (scale bounded by
  a tanh clamp). Unlike DiCMoR's public Glow, channels ARE permuted between couplings, so every channel
  is transformed. The permutation is a buffer, so export needs no matrix inverse.
* Missing inputs are replaced with zeros by ``torch.where`` before anything reads them, so a missing
  modality's values (even NaN) cannot reach any output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_cmarr import CMARRConfig

MODALITY_ORDER = ("text", "audio", "video")


# --------------------------------------------------------------------------------------------------
# Temporal alignment onto K segments
# --------------------------------------------------------------------------------------------------
def segment_pool_weights(mask: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Row-normalised weights [B, K, L] that average valid positions into K segments.

    ``mask`` is [B, L] (bool or 0/1). Valid positions are ranked r = 0..l-1 (holes in the mask are
    skipped) and segment k averages ranks in [floor(k*l/K), ceil((k+1)*l/K)), as adaptive average
    pooling does, so every segment is non-empty whenever l >= 1. A row with l = 0 is all zeros.
    """
    m = mask.to(torch.float32)
    rank = torch.cumsum(m, dim=1) - 1.0  # [B, L]
    length = m.sum(dim=1, keepdim=True)  # [B, 1]
    k = torch.arange(num_segments, device=mask.device, dtype=torch.float32).view(1, -1, 1)  # [1, K, 1]
    lk = length.unsqueeze(1)  # [B, 1, 1]
    start = torch.floor(k * lk / num_segments)
    end = torch.ceil((k + 1.0) * lk / num_segments)
    r = rank.unsqueeze(1)  # [B, 1, L]
    w = (r >= start).float() * (r < end).float() * m.unsqueeze(1)  # [B, K, L]
    return w / w.sum(dim=-1, keepdim=True).clamp(min=1.0)


def masked_mean_std(x: torch.Tensor, mask: torch.Tensor, logprob_tail: int = 0) -> torch.Tensor:
    """[B, L, D] and [B, L] mask -> [B, 2D]: mean and standard deviation over the valid positions
    (zeros for a row without any). The last ``logprob_tail`` dims are log-probabilities: their "mean"
    is the log of the mean probability, log(1/n * sum exp(x)) (a row without valid frames gets -1e4)."""
    w = mask.to(x.dtype).unsqueeze(-1)  # [B, L, 1]
    n = w.sum(dim=1).clamp(min=1.0)  # [B, 1]
    mean = (x * w).sum(dim=1) / n
    var = ((x - mean.unsqueeze(1)).pow(2) * w).sum(dim=1) / n
    if logprob_tail:
        d = x.shape[-1] - logprob_tail
        tail = torch.where(w > 0.5, x[..., d:], torch.full_like(x[..., d:], -1e4))
        lme = torch.logsumexp(tail, dim=1) - torch.log(n)  # [B, tail]
        mean = torch.cat([mean[:, :d], lme], dim=-1)
    return torch.cat([mean, torch.sqrt(var + 1e-6)], dim=-1)


class ModalityProjection(nn.Module):
    """1-D convolution D_n -> d over time, then masked pooling onto K segments: [B, L, D] -> [B, K, d]."""

    def __init__(self, in_dim: int, d_model: int, kernel: int, num_segments: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, d_model, kernel_size=kernel, padding=kernel // 2)
        self.num_segments = num_segments

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x * mask.unsqueeze(-1).to(x.dtype)  # padding never leaks into the convolution
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # [B, L, d]
        w = segment_pool_weights(mask, self.num_segments)  # [B, K, L]
        return torch.bmm(w.to(h.dtype), h)  # weights in fp32, applied in the model's dtype (fp16/bf16 too)


# --------------------------------------------------------------------------------------------------
# Attention written with plain matmuls: lengths stay dynamic in ONNX export
# --------------------------------------------------------------------------------------------------
class Attention(nn.Module):
    """Multi-head attention returning (output [B, Lq, d], weights [B, H, Lq, Lk])."""

    def __init__(self, d_q: int, d_kv: int, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.q = nn.Linear(d_q, d_model)
        self.k = nn.Linear(d_kv, d_model)
        self.v = nn.Linear(d_kv, d_model)
        self.out = nn.Linear(d_model, d_q)
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        return x.reshape(b, -1, self.heads, self.head_dim).transpose(1, 2)  # [B, H, L, hd]

    def forward(self, q_in: torch.Tensor, kv_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self._split(self.q(q_in)), self._split(self.k(kv_in)), self._split(self.v(kv_in))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        attn = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(self.drop(attn), v)  # [B, H, Lq, hd]
        ctx = ctx.transpose(1, 2).reshape(q_in.shape[0], -1, self.heads * self.head_dim)
        return self.out(ctx), scores


class FeedForward(nn.Module):
    def __init__(self, d: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d * mult), nn.GELU(), nn.Dropout(dropout), nn.Linear(d * mult, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AttentionBlock(nn.Module):
    """Pre-LayerNorm transformer block; cross-attention when ``kv`` differs from ``q``."""

    def __init__(self, d_q: int, d_kv: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.ln_q = nn.LayerNorm(d_q)
        self.ln_kv = nn.LayerNorm(d_kv)
        self.attn = Attention(d_q, d_kv, d_q, heads, dropout)
        self.ln_ff = nn.LayerNorm(d_q)
        self.ff = FeedForward(d_q, ff_mult, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, kv: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        qn = self.ln_q(q)
        kvn = qn if kv is None else self.ln_kv(kv)
        a, scores = self.attn(qn, kvn)
        h = q + self.drop(a)
        h = h + self.drop(self.ff(self.ln_ff(h)))
        return h, scores


# --------------------------------------------------------------------------------------------------
# Alignment: the uncertainty modelling component (UMC)
# --------------------------------------------------------------------------------------------------
class UMC(nn.Module):
    """Point sequence [B, K, d] -> diagonal Gaussian (mu [B, g], var [B, g]).

    Feature-level interaction by an MLP, sequence-level interaction by multi-head self-attention,
    both with GELU and LayerNorm (paper Fig. 3). ``point=True`` gives the "w/ Point" ablation:
    var is identically 0, so the 2-Wasserstein distance reduces to the squared Euclidean distance.
    """

    def __init__(self, d: int, g: int, heads: int, dropout: float, point: bool) -> None:
        super().__init__()
        self.point = point
        self.ln1 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.seq = AttentionBlock(d, d, heads, 2, dropout)
        self.ln2 = nn.LayerNorm(d)
        self.mu = nn.Linear(d, g)
        self.logvar = nn.Linear(d, g)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x + self.mlp(self.ln1(x))
        h, _ = self.seq(h)
        pooled = self.ln2(h.mean(dim=1))
        mu = self.mu(pooled)
        if self.point:
            return mu, torch.zeros_like(mu)
        var = F.softplus(self.logvar(pooled)) + 1e-6  # strictly positive
        return mu, var


# --------------------------------------------------------------------------------------------------
# Reconstruction: normalizing flows
# --------------------------------------------------------------------------------------------------
class ActNorm(nn.Module):
    """Per-channel affine y = x * exp(logs) + bias on [B, d, K]; logdet = K * sum(logs)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.logs = nn.Parameter(torch.zeros(1, d, 1))
        self.bias = nn.Parameter(torch.zeros(1, d, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = self.logs.sum() * x.shape[2]
        return x * torch.exp(self.logs) + self.bias, logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.bias) * torch.exp(-self.logs)


class Permute(nn.Module):
    """Fixed random channel permutation (a buffer, saved in checkpoints); logdet 0."""

    def __init__(self, d: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(d, generator=g)
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.perm)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y.index_select(1, self.inv_perm)


class AffineCoupling(nn.Module):
    """RealNVP/Glow affine coupling on [B, d, K].

    The first half conditions a scale and shift for the second half through a small temporal CNN.
    log-scale is bounded as c*tanh(s/c) so the inverse stays well conditioned. The last conv is
    zero-initialised, so each coupling starts as the identity.
    """

    def __init__(self, d: int, hidden: int, kernel: int, clamp: float) -> None:
        super().__init__()
        self.half = d // 2
        self.clamp = clamp
        self.net = nn.Sequential(
            nn.Conv1d(self.half, hidden, kernel, padding=kernel // 2), nn.GELU(),
            nn.Conv1d(hidden, hidden, 1), nn.GELU(),
            nn.Conv1d(hidden, 2 * (d - self.half), kernel, padding=kernel // 2),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _params(self, xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(xa).chunk(2, dim=1)
        return self.clamp * torch.tanh(s / self.clamp), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x[:, : self.half], x[:, self.half :]
        log_s, t = self._params(xa)
        yb = xb * torch.exp(log_s) + t
        return torch.cat([xa, yb], dim=1), log_s.sum(dim=(1, 2))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        ya, yb = y[:, : self.half], y[:, self.half :]
        log_s, t = self._params(ya)
        return torch.cat([ya, (yb - t) * torch.exp(-log_s)], dim=1)


class ModalityFlow(nn.Module):
    """F_n: X [B, K, d] -> (Z [B, K, d], logdet [B]); ``inverse`` is its exact inverse."""

    def __init__(self, d: int, steps: int, hidden: int, kernel: int, clamp: float, seed: int) -> None:
        super().__init__()
        self.actnorms = nn.ModuleList([ActNorm(d) for _ in range(steps)])
        self.perms = nn.ModuleList([Permute(d, seed * 1000 + i) for i in range(steps)])
        self.couplings = nn.ModuleList([AffineCoupling(d, hidden, kernel, clamp) for _ in range(steps)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.transpose(1, 2)
        logdet = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for an, pm, cp in zip(self.actnorms, self.perms, self.couplings, strict=True):
            h, ld = an(h)
            logdet = logdet + ld
            h = pm(h)
            h, ld = cp(h)
            logdet = logdet + ld
        return h.transpose(1, 2), logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        h = z.transpose(1, 2)
        for an, pm, cp in zip(reversed(self.actnorms), reversed(self.perms), reversed(self.couplings),
                              strict=True):
            h = cp.inverse(h)
            h = pm.inverse(h)
            h = an.inverse(h)
        return h.transpose(1, 2)


# --------------------------------------------------------------------------------------------------
# Reconstruction: 1-D residual channel-attention group
# --------------------------------------------------------------------------------------------------
class RCAB1d(nn.Module):
    """conv3 -> ReLU -> conv3 -> channel attention (pool, bottleneck, sigmoid) -> + input."""

    def __init__(self, d: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(d, d, 3, padding=1), nn.ReLU(), nn.Conv1d(d, d, 3, padding=1))
        self.ca = nn.Sequential(nn.Conv1d(d, d // reduction, 1), nn.ReLU(), nn.Conv1d(d // reduction, d, 1),
                                nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return x + h * self.ca(h.mean(dim=-1, keepdim=True))


class ReconstructionGroup(nn.Module):
    """A residual group of RCABs on [B, K, d] (the group has its own long residual)."""

    def __init__(self, d: int, blocks: int, reduction: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[RCAB1d(d, reduction) for _ in range(blocks)])
        self.tail = nn.Conv1d(d, d, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)
        return (h + self.tail(self.blocks(h))).transpose(1, 2)


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------
@dataclass
class CMARROutput:
    logits: torch.Tensor  # [B, C]
    features: torch.Tensor  # [B, 3, K, d] fused inputs: projected if available, reconstructed if missing
    projected: torch.Tensor  # [B, 3, K, d] projections of the inputs present (zeros where absent)
    reconstructed: torch.Tensor  # [B, 3, K, d] X^_n = RCAB(F_n^-1(mean of available latents)), all n
    mu: torch.Tensor  # [B, 3, g] UMC means (of the inputs present)
    var: torch.Tensor  # [B, 3, g] UMC variances (0 for the point ablation)
    latents: torch.Tensor  # [B, 3, K, d] flow latents Z_n of the present inputs
    logdet: torch.Tensor  # [B, 3] flow log-determinants
    representation: torch.Tensor  # [B, 2d] pooled joint representation
    attention: torch.Tensor  # [B, H, K, K] pre-softmax scores of the fusion self-attention
    avail: torch.Tensor  # [B, 3] the mask used for fusion
    present: torch.Tensor  # [B, 3] which inputs were real (ground truth known)


class CMARR(nn.Module):
    OUTPUT_NAMES = ("logits", "features", "mu", "var")  # CMARROutput fields an exported graph returns

    def __init__(self, config: CMARRConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        dims = c.input_dims
        self.proj = nn.ModuleDict({m: ModalityProjection(dims[m], c.d_model, c.proj_kernel, c.num_segments)
                                   for m in MODALITY_ORDER})
        self.umc = nn.ModuleDict({m: UMC(c.d_model, c.umc_dim, c.umc_heads, c.dropout, c.embedding == "point")
                                  for m in MODALITY_ORDER})
        self.flows = nn.ModuleDict({
            m: ModalityFlow(c.d_model, c.flow_steps, c.flow_hidden, c.flow_kernel, c.flow_scale_clamp, seed=i + 1)
            for i, m in enumerate(MODALITY_ORDER)})
        self.recon = nn.ModuleDict({m: ReconstructionGroup(c.d_model, c.rcab_blocks, c.rcab_reduction)
                                    for m in MODALITY_ORDER})
        self.cross_tv = AttentionBlock(c.d_model, c.d_model, c.fusion_heads, c.fusion_ff_mult, c.dropout)
        self.cross_ta = AttentionBlock(c.d_model, c.d_model, c.fusion_heads, c.fusion_ff_mult, c.dropout)
        self.self_attn = AttentionBlock(2 * c.d_model, 2 * c.d_model, c.fusion_heads, c.fusion_ff_mult, c.dropout)
        self.head = nn.Sequential(nn.LayerNorm(2 * c.d_model), nn.Linear(2 * c.d_model, c.d_model), nn.GELU(),
                                  nn.Dropout(c.dropout), nn.Linear(c.d_model, c.num_classes))
        if c.pooled_skip:  # per-modality linear path from pooled input statistics (see the config)
            self.skip = nn.ModuleDict({m: nn.Linear(2 * dims[m], c.num_classes) for m in MODALITY_ORDER})
            # How much each modality's linear reading counts under each availability set: row
            # 4*t + 2*a + v, column = modality. Learned; 1 everywhere at the start.
            self.skip_gate = nn.Parameter(torch.ones(8, 3))
            # How much the attention path counts under each availability set (same rows). Not trained:
            # fitted on validation after training (training.fit.finalize), 1 until then.
            self.register_buffer("deep_gate", torch.ones(8))
            # The product rule (config.fusion_rule): per availability set, the log-prior correction
            # log prior(y) - sum_m w_m log prior_m(y) over the available experts, and the weight of the
            # attention path as a residual on the product (both fitted after training; 0 and 1 until then).
            # And each expert's exponent in the (log-linear) pool: 1 unless real paired data fitted another.
            self.register_buffer("prior_bias", torch.zeros(8, c.num_classes))
            self.register_buffer("product_deep_gate", torch.ones(8))
            self.register_buffer("product_gate", torch.ones(8, 3))
        self.fusion_rule = c.fusion_rule
        # L_udcl similarity S = a*D + b (a < 0 via -softplus) over a learned temperature, one per pair.
        self.udcl_a = nn.Parameter(torch.zeros(3))
        self.udcl_b = nn.Parameter(torch.zeros(3))
        self.udcl_log_tau = nn.Parameter(torch.zeros(3))

    def set_fusion_rule(self, rule: str) -> None:
        """Choose how the experts combine ("product" | "learned"; see ``CMARRConfig.fusion_rule``)."""
        from .configuration_cmarr import FUSION_RULES

        if rule not in FUSION_RULES:
            raise ValueError(f"fusion rule must be one of {FUSION_RULES}, got {rule!r}")
        if not self.config.pooled_skip:
            raise ValueError("a fusion rule needs the per-modality expert paths (pooled_skip: true)")
        self.fusion_rule = rule

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        text: torch.Tensor, text_mask: torch.Tensor,
        audio: torch.Tensor, audio_mask: torch.Tensor,
        video: torch.Tensor, video_mask: torch.Tensor,
        avail: torch.Tensor, present: torch.Tensor | None = None,
    ) -> CMARROutput:
        """Inputs: per modality a padded [B, L_n, D_n] sequence and its [B, L_n] validity mask, and the
        [B, 3] availability mask. ``present`` (training only) marks inputs whose ground truth is real
        although ``avail`` hides them from fusion; it defaults to ``avail``.
        """
        avail = avail.to(text.dtype)
        present = avail if present is None else torch.maximum(present.to(text.dtype), avail)
        xs, masks = (text, audio, video), (text_mask, audio_mask, video_mask)
        projected, latents, logdets, mus, vars_, pooled = [], [], [], [], [], []
        for i, m in enumerate(MODALITY_ORDER):
            keep = present[:, i] > 0.5  # [B]
            x = torch.where(keep.view(-1, 1, 1), xs[i], torch.zeros_like(xs[i]))  # NaN-safe zeroing
            msk = masks[i].to(torch.bool) & keep.view(-1, 1)
            if self.config.pooled_skip:
                pooled.append(self.skip[m](masked_mean_std(x, msk, self.config.logprob_tail[i])))  # [B, C]
            p = self.proj[m](x, msk)  # [B, K, d]
            z, ld = self.flows[m](p)
            mu, var = self.umc[m](p)
            projected.append(p)
            latents.append(z)
            logdets.append(ld)
            mus.append(mu)
            vars_.append(var)
        X = torch.stack(projected, dim=1)  # [B, 3, K, d]
        Z = torch.stack(latents, dim=1)
        # Latent transfer (eq. 7): the average of the AVAILABLE modalities' latents, for any subset.
        w = avail.view(-1, 3, 1, 1)
        z_avg = (Z * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)  # [B, K, d]
        recon = torch.stack([self.recon[m](self.flows[m].inverse(z_avg)) for m in MODALITY_ORDER], dim=1)
        feats = torch.where(w > 0.5, X, recon)  # available: own projection; missing: reconstruction
        x_t, x_a, x_v = feats[:, 0], feats[:, 1], feats[:, 2]
        h_tv, _ = self.cross_tv(x_t, x_v)
        h_ta, _ = self.cross_ta(x_t, x_a)
        h, scores = self.self_attn(torch.cat([h_tv, h_ta], dim=-1))
        rep = h.mean(dim=1)
        logits = self.head(rep)
        if self.config.pooled_skip:  # only modalities available to fusion speak through their linear path
            row = (avail * avail.new_tensor([4.0, 2.0, 1.0])).sum(dim=1).round().long()  # [B] in 0..7
            experts = torch.stack(pooled, dim=1)  # [B, 3, C] each expert's calibrated logits
            if self.fusion_rule == "product":  # sum of log-posteriors + prior correction (+ residual)
                logits = logits * self.product_deep_gate.index_select(0, row).unsqueeze(-1)
                weight = self.product_gate.index_select(0, row) * avail  # [B, 3]
                logits = logits + (experts * weight.unsqueeze(-1)).sum(dim=1)
                logits = logits + self.prior_bias.index_select(0, row).to(logits.dtype)
            else:
                gate = self.skip_gate.index_select(0, row) * avail  # [B, 3]
                logits = logits * self.deep_gate.index_select(0, row).unsqueeze(-1)
                logits = logits + (experts * gate.unsqueeze(-1)).sum(dim=1)
        return CMARROutput(
            logits=logits, features=feats, projected=X, reconstructed=recon,
            mu=torch.stack(mus, dim=1), var=torch.stack(vars_, dim=1), latents=Z,
            logdet=torch.stack(logdets, dim=1), representation=rep, attention=scores,
            avail=avail, present=present,
        )
