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

from dataclasses import dataclass

import torch
from torch import nn

from models.cmarr.alignment import UMC
from models.cmarr.attention import AttentionBlock
from models.cmarr.configuration_cmarr import FUSION_RULES, CMARRConfig
from models.cmarr.flows import ModalityFlow
from models.cmarr.fusion import availability_row, learned_rule, product_rule
from models.cmarr.reconstruction import ReconstructionGroup
from models.cmarr.segments import ModalityProjection, masked_mean_std

# The building blocks live in their own modules: segments, attention, alignment, flows, reconstruction,
# fusion.
__all__ = ["CMARR", "MODALITY_ORDER", "CMARROutput"]

MODALITY_ORDER = ("text", "audio", "video")


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
            m: ModalityFlow(c.d_model, c.flow_steps, c.flow_hidden, c.flow_kernel, c.flow_scale_clamp,
                            seed=i + 1)
            for i, m in enumerate(MODALITY_ORDER)})
        self.recon = nn.ModuleDict({m: ReconstructionGroup(c.d_model, c.rcab_blocks, c.rcab_reduction)
                                    for m in MODALITY_ORDER})
        self.cross_tv = AttentionBlock(c.d_model, c.d_model, c.fusion_heads, c.fusion_ff_mult, c.dropout)
        self.cross_ta = AttentionBlock(c.d_model, c.d_model, c.fusion_heads, c.fusion_ff_mult, c.dropout)
        self.self_attn = AttentionBlock(2 * c.d_model, 2 * c.d_model, c.fusion_heads, c.fusion_ff_mult,
                                        c.dropout)
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
        projected, latents, logdets, mus, vars_, pooled = self._encode(
            (text, audio, video), (text_mask, audio_mask, video_mask), present)
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
            logits = self._fuse_experts(logits, pooled, avail)
        return CMARROutput(
            logits=logits, features=feats, projected=X, reconstructed=recon,
            mu=torch.stack(mus, dim=1), var=torch.stack(vars_, dim=1), latents=Z,
            logdet=torch.stack(logdets, dim=1), representation=rep, attention=scores,
            avail=avail, present=present,
        )

    def _encode(
        self, xs: tuple[torch.Tensor, ...], masks: tuple[torch.Tensor, ...], present: torch.Tensor
    ) -> tuple[list[torch.Tensor], ...]:
        """Per modality (in MODALITY_ORDER) of the inputs ``present``: the projection [B, K, d], its flow
        latent [B, K, d] and log-determinant [B], the UMC mean and variance [B, g] and, with the expert
        paths, the expert's logits [B, C] (an empty list without them)."""
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
        return projected, latents, logdets, mus, vars_, pooled

    def _fuse_experts(
        self, logits: torch.Tensor, pooled: list[torch.Tensor], avail: torch.Tensor
    ) -> torch.Tensor:
        """Add the experts' logits ``pooled`` (3 x [B, C]) of the modalities available to fusion to the
        attention path's ``logits`` [B, C] by ``self.fusion_rule`` (see models.cmarr.fusion)."""
        row = availability_row(avail)  # [B] in 0..7
        experts = torch.stack(pooled, dim=1)  # [B, 3, C] each expert's calibrated logits
        if self.fusion_rule == "product":
            return product_rule(logits, experts, avail, row, self.product_deep_gate, self.product_gate,
                                self.prior_bias)
        return learned_rule(logits, experts, avail, row, self.deep_gate, self.skip_gate)
