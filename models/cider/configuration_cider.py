"""CIDer configuration: a typed dataclass validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MSSDConfig:
    """Weight-sharing self-distillation (MSSD) used when training: the same weights are the teacher on the
    complete input and the student on an RMFM-masked copy of it.

    L = CE(student) + teacher_ce * CE(teacher) + rep * (1 - cos(h_masked, sg h_full))
        + att * KL(softmax A_full || softmax A_masked) + rec * SmoothL1(x^, x) over dropped positions.
    A weight of 0 switches the term off; ``enabled: false`` trains on the complete input with CE only.
    """

    enabled: bool = True
    missing_mode: str = "rmfm"  # RMFM-family mode of the student's masks (training.data.missing.MODES)
    max_rate: float = 1.0  # training rates are drawn from U(0, max_rate)
    rep: float = 1.0
    att: float = 0.1
    rec: float = 1.0
    # Also train the teacher pass (complete input) with CE, as the public recipe does.
    teacher_ce: float = 1.0

    def __post_init__(self) -> None:
        for name in ("rep", "att", "rec", "teacher_ce"):
            v = getattr(self, name)
            if v < 0:
                raise ValueError(f"MSSD weight {name} must be >= 0, got {v}")
        modes = ("rmfm", "rmfm_same", "rmm", "tmfm", "stmfm", "smm")  # = training.data.missing.MODES
        if self.missing_mode not in modes:
            raise ValueError(f"mssd.missing_mode must be one of {list(modes)}, got {self.missing_mode!r}")
        if not 0.0 <= self.max_rate <= 1.0:
            raise ValueError(f"mssd.max_rate must be in [0, 1], got {self.max_rate}")


@dataclass
class CIDerConfig:
    """Shapes and architecture of CIDer (WSAM + per-modality GRU + MCT).

    Width ``d_model`` = 32 follows the public recipe: CIDer's point is a small model that trains fast.
    Feature sizes default to the paper's extractors (BERT-base 768, wav2vec2-base 768, DenseFace 342).
    """

    text_dim: int = 768
    audio_dim: int = 768
    video_dim: int = 342
    num_classes: int = 4
    class_names: tuple[str, ...] = ("ang", "hap", "neu", "sad")
    d_model: int = 32
    proj_kernel: int = 1  # Conv1d kernel of the input projection (odd; 1 = per-position linear)
    mct_layers: int = 2
    mct_heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.1
    pe_base: float = 10000.0
    mssd: MSSDConfig = field(default_factory=MSSDConfig)

    def __post_init__(self) -> None:
        for name in ("text_dim", "audio_dim", "video_dim", "d_model", "mct_layers", "mct_heads", "ff_mult"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} entries but num_classes is {self.num_classes}"
            )
        if self.d_model % 2:
            raise ValueError(f"d_model must be even (sinusoidal positional encoding), got {self.d_model}")
        if self.d_model % self.mct_heads:
            raise ValueError(f"d_model {self.d_model} must be divisible by mct_heads {self.mct_heads}")
        if self.proj_kernel < 1 or self.proj_kernel % 2 == 0:
            raise ValueError(f"proj_kernel must be a positive odd integer, got {self.proj_kernel}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.pe_base <= 1.0:
            raise ValueError(f"pe_base must be > 1, got {self.pe_base}")

    @property
    def input_dims(self) -> dict[str, int]:
        return {"text": self.text_dim, "audio": self.audio_dim, "video": self.video_dim}
