"""CM-ARR configuration: a typed dataclass validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field

FUSION_RULES = ("product", "learned")


@dataclass
class LossWeights:
    """Total loss L = alpha*L_udcl + beta*L_spcl + lam*L_rec + L_cls (+ flow_nll, an extension).

    Paper defaults: alpha 1, beta 0.1 (its sweep found 0.5 best), lambda 10. A weight of 0 switches the
    term off entirely, which gives the ablations "w/o udcl" (alpha=0) and "w/o spcl" (beta=0).
    """

    alpha: float = 1.0
    beta: float = 0.1
    lam: float = 10.0
    # Not in the paper: negative log-likelihood of each modality's flow latents under N(0, I). Off by
    # default; it makes F_n a density model as in DiCMoR rather than only a trained bijection.
    flow_nll: float = 0.0
    spcl_temperature: float = 0.07

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "lam", "flow_nll"):
            v = getattr(self, name)
            if v < 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {v}")
        if self.spcl_temperature <= 0:
            raise ValueError(f"spcl_temperature must be > 0, got {self.spcl_temperature}")


@dataclass
class CMARRConfig:
    """All shape and architecture settings of CM-ARR.

    Feature sizes default to the paper's extractors (BERT-base 768, wav2vec2-base 768, DenseFace 342);
    any sizes work. Every modality is projected by a 1-D convolution to width ``d_model`` and then pooled
    onto a common grid of ``num_segments`` temporal segments (masked adaptive average pooling), so that
    latents of different modalities can be averaged slot by slot and one graph serves any lengths.
    """

    text_dim: int = 768
    audio_dim: int = 768
    video_dim: int = 342
    num_classes: int = 4
    class_names: tuple[str, ...] = ("ang", "hap", "neu", "sad")
    d_model: int = 128
    num_segments: int = 16
    proj_kernel: int = 3
    dropout: float = 0.1
    # UMC (uncertainty modelling component)
    umc_heads: int = 4
    umc_dim: int = 64
    embedding: str = "gaussian"  # "gaussian" (paper) or "point" (the "w/ Point" ablation)
    # Normalizing flows
    flow_steps: int = 4
    flow_hidden: int = 128
    flow_kernel: int = 3
    flow_scale_clamp: float = 2.0
    # Reconstruction: an RCAB group
    rcab_blocks: int = 4
    rcab_reduction: int = 8
    # Fusion
    fusion_heads: int = 4
    fusion_ff_mult: int = 2
    # Not in the paper: a linear path per modality from its pooled input statistics (mean and standard
    # deviation over valid frames) straight to the logits, added when the modality is available. It
    # gives fusion the strength of a per-modality linear expert on small corpora; the attention path
    # adds what the modalities say together and what reconstruction recovers. A learned gate per
    # availability set and modality scales each linear reading (e.g. how far to trust words when a voice
    # is heard too). Off by default.
    pooled_skip: bool = False
    # Trailing input dims per modality (text, audio, video) that are an upstream classifier's
    # log-probabilities (the offline profile appends the face model's 7). The linear path pools them as
    # the log of the mean probability over frames (the face expert's own reading), not their mean.
    logprob_tail: tuple[int, int, int] = (0, 0, 0)
    # How the linear paths (pooled_skip) of the available modalities combine:
    # "product": a product of the calibrated experts,
    #   p(y | x) ~ prior(y) * prod_m [p_m(y | x_m) / prior_m(y)]^w_m
    #   (logits: the experts' calibrated logits times w_m, the buffer ``product_gate``, 1 unless real
    #   paired data fitted less, plus a per-set prior correction, ``prior_bias``); the attention path is a
    #   residual on it, weighted per set by ``product_deep_gate``.
    #   The right rule when no corpus pairs the modalities of one moment (each modality's evidence taken
    #   as independent given the emotion).
    # "learned": each expert weighted per availability set by ``skip_gate`` (stacking), the attention
    #   path by ``deep_gate``; fitted on validation pairs, so only meaningful on real paired corpora.
    fusion_rule: str = "learned"
    losses: LossWeights = field(default_factory=LossWeights)

    def __post_init__(self) -> None:  # noqa: C901 - one check per field
        for name in ("text_dim", "audio_dim", "video_dim", "d_model", "num_segments", "umc_dim",
                     "flow_steps", "flow_hidden", "rcab_blocks", "num_classes"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} entries but num_classes is {self.num_classes}")
        if self.d_model % 2:
            raise ValueError(f"d_model must be even (affine coupling splits channels), got {self.d_model}")
        if self.d_model % self.umc_heads or self.d_model % self.fusion_heads:
            raise ValueError(f"d_model {self.d_model} must be divisible by umc_heads {self.umc_heads} "
                             f"and fusion_heads {self.fusion_heads}")
        if (2 * self.d_model) % self.fusion_heads:
            raise ValueError("2*d_model must be divisible by fusion_heads")
        if self.embedding not in ("gaussian", "point"):
            raise ValueError(f"embedding must be 'gaussian' or 'point', got {self.embedding!r}")
        if self.proj_kernel % 2 == 0 or self.flow_kernel % 2 == 0:
            raise ValueError("proj_kernel and flow_kernel must be odd (same-length convolutions)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.rcab_reduction < 1 or self.d_model // self.rcab_reduction < 1:
            raise ValueError(f"rcab_reduction {self.rcab_reduction} too large for d_model {self.d_model}")
        if self.flow_scale_clamp <= 0:
            raise ValueError("flow_scale_clamp must be > 0")
        if self.fusion_rule not in FUSION_RULES:
            raise ValueError(f"fusion_rule must be one of {FUSION_RULES}, got {self.fusion_rule!r}")
        dims = (self.text_dim, self.audio_dim, self.video_dim)
        tails = self.logprob_tail
        if len(tails) != 3 or any(not 0 <= k <= d for k, d in zip(tails, dims, strict=True)):
            raise ValueError(f"logprob_tail must give 0..dim trailing dims per modality, got {tails}")

    @property
    def input_dims(self) -> dict[str, int]:
        return {"text": self.text_dim, "audio": self.audio_dim, "video": self.video_dim}
