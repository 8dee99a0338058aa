"""MSSD: weight-sharing self-distillation, and the trainer adapters that use it.

The same network is the teacher on the complete input and the student on an RMFM-masked copy. The
student's loss adds to its task loss:

* representation:   1 - cos(h_masked, stopgrad h_full)                 (joint representation)
* attention:        KL(softmax(A_full) || softmax(A_masked))             (last fusion layer's scores)
* reconstruction:   SmoothL1(x^, x) over the DROPPED positions only

``CIDerAdapter`` trains CIDer this way (its reconstruction heads output input-space sequences, so
the term covers every dropped text token, audio frame and video frame). ``CMARRMSSDAdapter`` does the
same for CM-ARR with the outputs it has: its joint representation, its fusion self-attention scores
over the K segments, and, for modalities the mask removed entirely, its reconstruction X^_n against
the teacher's projection X_n (CM-ARR has no per-position reconstruction, so positions dropped inside a
modality that keeps others contribute no reconstruction term).

Masks come from a generator seeded from torch's global RNG at every batch, so the trainer's per-epoch
seeding makes them reproducible and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.cider import CIDer, CIDerConfig, CIDerOutput, MSSDConfig
from training.data.missing import MissingMasks, MissingSpec, apply_masks, draw_masks
from training.loop.adapters import ModelAdapter, call_model


# --------------------------------------------------------------------------------------------------
# The three distillation terms
# --------------------------------------------------------------------------------------------------
def representation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - cos(h_student, stopgrad h_teacher), averaged over the batch. h: [B, F]."""
    return (1.0 - F.cosine_similarity(student, teacher.detach(), dim=-1)).mean()


def attention_kl(
    student_scores: torch.Tensor, teacher_scores: torch.Tensor, key_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """KL(softmax(A_teacher) || softmax(A_student)) per attention row, averaged over valid rows.

    Scores are pre-softmax [B, H, Lq, Lk] (self-attention: Lq = Lk). ``key_mask`` [B, Lk] bool marks
    positions that exist (padding excluded); padded keys are left out of both softmaxes and padded query
    rows are not counted. The teacher is stop-gradient.
    """
    t = teacher_scores.detach()
    s = student_scores
    if key_mask is not None:
        km = key_mask[:, None, None, :]
        t = t.masked_fill(~km, -1e9)
        s = s.masked_fill(~km, -1e9)
    log_p = F.log_softmax(t, dim=-1)
    log_q = F.log_softmax(s, dim=-1)
    kl = log_p.exp() * (log_p - log_q)
    if key_mask is not None:
        kl = kl * key_mask[:, None, None, :].to(kl.dtype)
    kl = kl.sum(dim=-1)  # [B, H, Lq]
    if key_mask is None:
        return kl.mean()
    rows = key_mask[:, None, :].to(kl.dtype).expand_as(kl)
    return (kl * rows).sum() / rows.sum().clamp(min=1.0)


def masked_smooth_l1(pred: torch.Tensor, target: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor:
    """SmoothL1 over dropped positions only: pred/target [B, L, D], dropped [B, L] bool.

    Mean over the dropped elements (count * D); 0 (with a gradient path) when nothing was dropped."""
    m = dropped.to(pred.dtype).unsqueeze(-1)
    err = F.smooth_l1_loss(pred, target.detach(), reduction="none") * m
    return err.sum() / (m.sum() * pred.shape[-1]).clamp(min=1.0)


@dataclass
class MSSDOutput:
    """What an MSSD adapter's forward returns while training."""

    student: Any  # model output on the masked batch
    teacher: Any  # model output on the complete batch
    masks: MissingMasks
    masked_batch: dict[str, Any]

    @property
    def logits(self) -> torch.Tensor:
        return self.student.logits


def _core(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model  # unwrap DDP


def _batch_generator() -> torch.Generator:
    """A CPU generator seeded from torch's global RNG (which the trainer seeds per epoch)."""
    seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator().manual_seed(seed)


def _with_avail(batch: dict[str, Any]) -> dict[str, Any]:
    if "avail" in batch:
        return batch
    return {**batch, "avail": batch["present"].to(torch.float32)}


def mask_batch(batch: dict[str, Any], cfg: MSSDConfig) -> tuple[dict[str, Any], MissingMasks]:
    """Student copy of a training batch: RMFM-family masks at random rates (training mode)."""
    spec = MissingSpec(mode=cfg.missing_mode, rate=None, max_train_rate=cfg.max_rate)
    masks = draw_masks(batch["text_mask"], batch["audio_mask"], batch["video_mask"], spec, _batch_generator())
    return apply_masks(batch, masks, update_avail=True), masks


# --------------------------------------------------------------------------------------------------
# CIDer
# --------------------------------------------------------------------------------------------------
def cider_mssd_loss(
    out: MSSDOutput, labels: torch.Tensor, cfg: MSSDConfig, batch: dict[str, Any]
) -> dict[str, torch.Tensor]:
    s: CIDerOutput = out.student
    t: CIDerOutput = out.teacher
    zero = s.logits.new_zeros(())
    terms = {
        "cls": F.cross_entropy(s.logits, labels),
        "cls_teacher": F.cross_entropy(t.logits, labels) if cfg.teacher_ce > 0 else zero,
        "rep": representation_loss(s.representation, t.representation) if cfg.rep > 0 else zero,
        "att": attention_kl(s.attention, t.attention, t.attention_mask) if cfg.att > 0 else zero,
        "rec": zero,
    }
    if cfg.rec > 0:
        rec = zero
        for i, m in enumerate(("text", "audio", "video")):
            rec = rec + masked_smooth_l1(
                s.reconstruction[i], batch[m], out.masks.dropped[i].to(s.logits.device)
            )
        terms["rec"] = rec
    terms["total"] = (
        terms["cls"]
        + cfg.teacher_ce * terms["cls_teacher"]
        + cfg.rep * terms["rep"]
        + cfg.att * terms["att"]
        + cfg.rec * terms["rec"]
    )
    return terms


class CIDerAdapter(ModelAdapter):
    """CIDer in the model-agnostic trainer. While training with ``mssd.enabled`` the forward runs the
    teacher (complete batch) and the student (masked batch) with the same weights; otherwise it is one
    plain pass and the loss is cross-entropy."""

    model_type = "cider"
    config_cls = CIDerConfig

    def build(self, config: Any) -> nn.Module:
        return CIDer(config)

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> Any:
        batch = _with_avail(batch)
        cfg = _core(model).config.mssd
        if not (model.training and cfg.enabled):
            return call_model(model, batch)
        masked, masks = mask_batch(batch, cfg)
        teacher = call_model(model, batch)
        student = call_model(model, masked)
        return MSSDOutput(student=student, teacher=teacher, masks=masks, masked_batch=masked)

    def loss(self, model: nn.Module, output: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if isinstance(output, MSSDOutput):
            return cider_mssd_loss(output, batch["label"], _core(model).config.mssd, batch)
        ce = F.cross_entropy(output.logits, batch["label"])
        return {"cls": ce, "total": ce}

    def logits(self, output: Any) -> torch.Tensor:
        return output.logits


# --------------------------------------------------------------------------------------------------
# CM-ARR with MSSD
# --------------------------------------------------------------------------------------------------
def cmarr_mssd_terms(out: MSSDOutput, cfg: MSSDConfig) -> dict[str, torch.Tensor]:
    """The MSSD terms CM-ARR's outputs support (see the module docstring)."""
    s, t = out.student, out.teacher
    zero = s.logits.new_zeros(())
    terms = {
        "rep": representation_loss(s.representation, t.representation) if cfg.rep > 0 else zero,
        "att": attention_kl(s.attention, t.attention) if cfg.att > 0 else zero,
        "rec": zero,
    }
    if cfg.rec > 0:
        gone = (s.avail < 0.5) & (t.present > 0.5)  # [B, 3] modalities the mask removed entirely
        if bool(gone.any()):
            err = F.smooth_l1_loss(s.reconstructed, t.projected.detach(), reduction="none").mean(dim=(2, 3))
            terms["rec"] = err[gone].mean()
    return terms


class CMARRMSSDAdapter(ModelAdapter):
    """CM-ARR trained with RMFM masks and MSSD: cmarr_loss on the student (its L_rec is replaced by the
    MSSD reconstruction against the teacher's projections, because the student's own inputs are the
    masked ones) + teacher_ce * CE(teacher) + the MSSD terms. Register as "cmarr_mssd"."""

    model_type = "cmarr"

    def __init__(self, mssd: MSSDConfig | None = None) -> None:
        from models.cmarr import CMARRConfig

        self.config_cls = CMARRConfig
        self.mssd = mssd or MSSDConfig()

    def build(self, config: Any) -> nn.Module:
        from models.cmarr import CMARR

        return CMARR(config)

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> Any:
        batch = _with_avail(batch)
        if not model.training:
            return call_model(model, batch)
        masked, masks = mask_batch(batch, self.mssd)
        teacher = call_model(model, batch, present=True)
        student = call_model(model, masked)  # present defaults to avail: zeroed inputs are not ground truth
        return MSSDOutput(student=student, teacher=teacher, masks=masks, masked_batch=masked)

    def loss(self, model: nn.Module, output: Any, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        from models.cmarr import cmarr_loss

        core = _core(model)
        if not isinstance(output, MSSDOutput):
            return cmarr_loss(core, output, batch["label"])
        terms = cmarr_loss(core, output.student, batch["label"])
        cfg = self.mssd
        extra = cmarr_mssd_terms(output, cfg)
        teacher_ce = F.cross_entropy(output.teacher.logits, batch["label"])
        total = (
            terms["total"]
            + cfg.teacher_ce * teacher_ce
            + cfg.rep * extra["rep"]
            + cfg.att * extra["att"]
            + cfg.rec * extra["rec"]
        )
        return {
            **terms,
            "cls_teacher": teacher_ce,
            "mssd_rep": extra["rep"],
            "mssd_att": extra["att"],
            "mssd_rec": extra["rec"],
            "total": total,
        }

    def logits(self, output: Any) -> torch.Tensor:
        return output.logits
