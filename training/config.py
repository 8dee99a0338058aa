"""Typed training configuration (YAML in configs/train/, dotted CLI overrides via ``--set a.b=c``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from training.data.conditions import MissingConfig


@dataclass
class OptimConfig:
    optimizer: str = "adamw"  # "adam" | "adamw"
    lr: float = 1e-5
    weight_decay: float = 0.0
    batch_size: int = 16
    epochs: int = 100
    grad_clip: float = 1.0  # max global L2 norm of the gradients; 0 switches clipping off
    scheduler: str = "cosine"  # "cosine" (per step, to min_lr_ratio*lr) | "step" | "constant"
    warmup_epochs: float = 0.0  # linear warm-up, in epochs (fractions allowed)
    min_lr_ratio: float = 0.0
    step_epochs: int = 30  # "step": multiply lr by gamma every step_epochs epochs
    gamma: float = 0.1
    gate_lr_mult: float = 1.0  # learning-rate multiplier for gate parameters (names ending in "_gate")

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optim.optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if self.scheduler not in ("cosine", "step", "constant"):
            raise ValueError(
                f"optim.scheduler must be 'cosine', 'step' or 'constant', got {self.scheduler!r}"
            )
        if self.lr <= 0 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError(
                f"optim needs lr > 0, batch_size >= 1, epochs >= 1; got lr={self.lr}, "
                f"batch_size={self.batch_size}, epochs={self.epochs}"
            )
        if self.gate_lr_mult <= 0:
            raise ValueError(f"optim.gate_lr_mult must be > 0, got {self.gate_lr_mult}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.warmup_epochs < 0:
            raise ValueError("optim.weight_decay, grad_clip and warmup_epochs must be >= 0")
        if not 0.0 <= self.min_lr_ratio <= 1.0 or not 0.0 < self.gamma <= 1.0 or self.step_epochs < 1:
            raise ValueError("optim.min_lr_ratio must be in [0, 1], gamma in (0, 1], step_epochs >= 1")


@dataclass
class DataConfig:
    # "mosi" (data/mosi-trimodal layout) | "store" (a feature store, leave-one-group-out) | "multi" (a
    # multi-corpus store: official splits where a corpus has them, else held-out speakers)
    source: str = "mosi"
    root: str = ""  # data folder; usually given on the command line (--root)
    classes: tuple[str, ...] = ("ang", "hap", "neu", "sad")  # store: labels kept, in class-index order
    test_group: str | None = None  # store: the held-out fold (e.g. "Session1"); cv.py sets it per fold
    val_by: str = "group"  # "group" | "speaker" (whole units) | "random" (stratified utterances)
    val_fraction: float = 0.2
    split_seed: int = 0
    mask_invalid_frames: bool = True  # frames the extractor marked absent (no face) are masked out
    max_len: dict[str, int] = field(default_factory=dict)  # optional cap on frames per modality
    num_workers: int = 0
    # --- multi-corpus stores (source: multi) ---
    corpora: dict[str, float] = field(default_factory=dict)  # corpus -> drawing weight; {} = all, weight 1
    eval_only: tuple[str, ...] = ("cremad",)  # corpora never trained or validated on (test only)
    test_speakers: tuple[str, ...] = ()  # held-out speakers (leave-speakers-out folds), e.g. "ravdess:01"
    label_map: dict[str, str] = field(default_factory=dict)  # extra label merges, e.g. {cal: neu}
    balance_classes: bool = True  # draw every class of a corpus equally often (UAR is the metric)
    epoch_size: int = 0  # training samples drawn per epoch (with replacement); 0 = the train split size
    corpus_batches: bool = True  # each batch from one corpus (no cross-corpus padding); see CorpusBatchDraw
    # Probability that a training sample with speech but no video gets a random face (a still from a face
    # corpus) of the same label as its video: teaches audio-video fusion that no corpus here pairs for
    # real. Validation reports paired conditions either way. 0 switches it off.
    pair_faces: float = 0.0
    # Probability of training on a random contiguous part (>= crop_min_seconds) of a sample's speech, as
    # the engine's windows often hold part of an utterance. 0 switches it off.
    crop_audio: float = 0.0
    crop_min_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.source not in ("mosi", "store", "multi"):
            raise ValueError(f"data.source must be 'mosi', 'store' or 'multi', got {self.source!r}")
        if self.source == "multi" and self.val_by != "speaker":
            raise ValueError("multi-corpus validation holds out whole speakers: set data.val_by: speaker")
        if not 0.0 <= self.crop_audio <= 1.0 or self.crop_min_seconds <= 0:
            raise ValueError("data.crop_audio must be in [0, 1] and data.crop_min_seconds > 0")
        if not 0.0 <= self.pair_faces <= 1.0:
            raise ValueError(f"data.pair_faces must be in [0, 1], got {self.pair_faces}")
        if self.epoch_size < 0 or any(w < 0 for w in self.corpora.values()):
            raise ValueError("data.epoch_size and data.corpora weights must be >= 0")
        if self.val_by not in ("group", "speaker", "random"):
            raise ValueError(f"data.val_by must be 'group', 'speaker' or 'random', got {self.val_by!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.source == "mosi" and self.val_by == "random":
            raise ValueError("MOSI validation must be grouped by video (data.val_by: group)")
        bad = {k: v for k, v in self.max_len.items() if k not in ("text", "audio", "video") or int(v) < 1}
        if bad:
            raise ValueError(f"data.max_len entries must be text/audio/video -> positive int, got {bad}")


@dataclass
class TrainConfig:
    model_type: str = "cmarr"
    model_id: str = "cmarr"  # name of the trained model in checkpoints and events (no ':')
    licence: str = ""  # the licence the weights inherit from the training data (written next to them)
    model: dict[str, Any] = field(default_factory=dict)  # the model config section (e.g. CMARRConfig)
    ablation: str = "none"  # none | baseline | wo_udcl | wo_spcl | w_point (see training.loop.adapters)
    missing: MissingConfig = field(default_factory=MissingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0
    deterministic: bool = True
    amp: bool = True  # mixed precision; used only on CUDA
    amp_dtype: str = "bfloat16"  # "bfloat16" | "float16" (float16 adds a GradScaler)
    # Validation metric that selects the best epoch and drives early stopping:
    # "auto" = uar_mean_all when training with missing conditions, uar_full otherwise.
    select_on: str = "auto"  # auto | uar_full | uar_mean_all | uar_mean_missing | war_full
    early_stopping_patience: int = 20  # epochs without improvement; 0 = never stop early
    log: str = "csv"  # "csv" | "tensorboard" | "both"
    progress: bool = True
    ddp_find_unused_parameters: bool = True
    # multi-corpus data: also fit the speech and text expert heads (training.fit.experts)
    experts: bool = True
    # "experts": start CM-ARR's pooled_skip path as the fitted, calibrated experts (frozen) and its
    # attention path at zero, so training starts from their product (training.fit.experts). "none": random.
    skip_init: str = "none"  # some loss terms can be off (ablations), leaving params unused
    # After training (models with a deep_gate): under each availability set, CM-ARR's attention path is
    # kept only where it raises validation UAR by at least this much over the expert path alone.
    attention_min_gain: float = 0.0
    # Then refit how much each modality's expert counts under each availability set, on validation
    # (training.fit.expert_weights; models with pooled_skip).
    refit_expert_weights: bool = False
    # CM-ARR's product rule (model.fusion_rule): which class balance each expert's posterior is taken to
    # carry and is divided out: "train" (each expert's own training balance), "uniform" (none), or "auto"
    # (the better of the two on real validation samples). Both are scored and reported
    # (training.fit.product_rule).
    product_prior: str = "auto"

    def __post_init__(self) -> None:
        if self.select_on not in ("auto", "uar_full", "uar_mean_all", "uar_mean_missing", "war_full"):
            raise ValueError(
                f"select_on must be auto|uar_full|uar_mean_all|uar_mean_missing|war_full, "
                f"got {self.select_on!r}"
            )
        if self.amp_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"amp_dtype must be 'bfloat16' or 'float16', got {self.amp_dtype!r}")
        if self.log not in ("csv", "tensorboard", "both"):
            raise ValueError(f"log must be 'csv', 'tensorboard' or 'both', got {self.log!r}")
        if self.skip_init not in ("none", "experts"):
            raise ValueError(f"skip_init must be 'none' or 'experts', got {self.skip_init!r}")
        if not self.model_id or ":" in self.model_id:
            raise ValueError(f"model_id must be a non-empty name without ':', got {self.model_id!r}")
        if self.product_prior not in ("auto", "train", "uniform"):
            raise ValueError(
                f"product_prior must be 'auto', 'train' or 'uniform', got {self.product_prior!r}"
            )
        if not 0.0 <= self.attention_min_gain < 1.0:
            raise ValueError(f"attention_min_gain must be in [0, 1), got {self.attention_min_gain}")
        if self.early_stopping_patience < 0:
            raise ValueError("early_stopping_patience must be >= 0")
        from training.loop.adapters import ABLATIONS

        if self.ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {sorted(ABLATIONS)}, got {self.ablation!r}")

    @property
    def selection_metric(self) -> str:
        if self.select_on != "auto":
            return self.select_on
        return "uar_full" if self.effective_missing_mode == "full" else "uar_mean_all"

    @property
    def effective_missing_mode(self) -> str:
        from training.loop.adapters import ABLATIONS

        return ABLATIONS[self.ablation][1] or self.missing.mode
