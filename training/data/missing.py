"""Missing-feature masks: the RMFM family (RMFM, RMFM_same, RMM, TMFM, STMFM, SMM).

Individual positions are dropped, not only whole modalities. A dropped audio or video frame becomes a
zero vector; a dropped text token becomes [UNK] for token-id text (the [CLS]/[SEP] ends are kept when
``protect_text_ends`` is set) and a zero vector for feature-level text. The validity masks are left
unchanged: the positions still exist, their content is missing. Every draw comes from an explicit
``torch.Generator``, so a seed fixes the masks.

Modes (r is the missing rate; "valid" means a real, non-padding position):

* ``rmfm``: one draw over the concatenated positions of all three modalities, position dropped with
  probability r. In training (``rate=None``) every sample draws its own rate per modality from
  U(0, max_train_rate), so modalities are damaged to different degrees.
* ``rmfm_same``: a separate draw per modality (text, audio, video, in that order) at the same rate r, or
  at per-modality rates (r_t, r_a, r_v) when a 3-tuple is given. Training draws one rate per sample.
* ``rmm``: whole modalities dropped, each independently with probability r per sample.
* ``tmfm``: one time mask, drawn over the text positions at rate r, shared by all modalities (aligned
  data: equal lengths and masks).
* ``stmfm``: one contiguous block of length round((L - 2) * r) per sample, starting uniformly in
  [1, L - 1 - block], shared by all modalities (aligned data); positions 0 and L - 1 are never dropped.

TMFM and STMFM on unaligned sequences (speech frames at 50 Hz next to a dozen word tokens): the mask is
drawn on a reference time axis, the sample's longest modality (its finest resolution), and every
position of every modality takes the value of the reference position at the same relative time (the
centre of position j of a modality with n valid positions lies at (j + 0.5) / n of the utterance). A
missing time region then removes the frames and the tokens of that region together; the stores keep no
word timestamps, so tokens are placed evenly over the utterance.
* ``smm``: one of the 7 fixed availability combinations (``models.modalities.CONDITIONS``); the
  modalities outside it are dropped entirely. Training draws a combination per sample.

With ``update_avail`` (default) a modality left with no kept position is also marked unavailable in
``avail``, so models that treat missing modalities explicitly (CM-ARR reconstructs them) see it; the
``present`` mask is left alone because the ground truth still exists for training losses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from models.modalities import CONDITIONS, MODALITIES

MODES: tuple[str, ...] = ("rmfm", "rmfm_same", "rmm", "tmfm", "stmfm", "smm")
UNK_ID = 100  # [UNK] in BERT's uncased vocabulary
Rate = float | tuple[float, float, float]


@dataclass
class MissingSpec:
    """What to drop. ``rate=None`` means training mode: rates (or SMM combinations) are drawn at random."""

    mode: str = "rmfm"
    rate: Rate | None = None
    condition: str | None = None  # smm only: fixed combination name ("t", "av", ...); None draws one
    protect_text_ends: bool = False  # token-id text: never drop the first and last valid token
    max_train_rate: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown missing mode {self.mode!r}; known: {list(MODES)}")
        rates = self.rate if isinstance(self.rate, tuple) else (self.rate,)
        if isinstance(self.rate, tuple) and (len(self.rate) != 3 or self.mode != "rmfm_same"):
            raise ValueError(f"per-modality rates {self.rate!r} need mode 'rmfm_same' and 3 values")
        for r in rates:
            if r is not None and not 0.0 <= float(r) <= 1.0:
                raise ValueError(f"missing rate must be in [0, 1], got {self.rate!r}")
        if self.condition is not None and self.condition not in CONDITIONS:
            raise ValueError(f"unknown condition {self.condition!r}; known: {list(CONDITIONS)}")
        if self.condition is not None and self.mode != "smm":
            raise ValueError("condition is only used by mode 'smm'")
        if not 0.0 <= self.max_train_rate <= 1.0:
            raise ValueError(f"max_train_rate must be in [0, 1], got {self.max_train_rate}")


@dataclass
class MissingMasks:
    """Per modality (text, audio, video): ``kept`` [B, L_n] bool = valid and not dropped; ``dropped``
    [B, L_n] bool = valid and dropped. ``kept | dropped`` is exactly the validity mask."""

    kept: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    dropped: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    spec: MissingSpec = field(default_factory=MissingSpec)

    def any_kept(self) -> torch.Tensor:
        """[B, 3] float: 1 where the modality kept at least one position."""
        return torch.stack([k.any(dim=1) for k in self.kept], dim=1).to(torch.float32)

    def rate_dropped(self) -> float:
        """Fraction of valid positions dropped, over all modalities."""
        d = sum(int(x.sum()) for x in self.dropped)
        v = d + sum(int(x.sum()) for x in self.kept)
        return d / v if v else 0.0


def _uniform(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=g)


def _ends(valid: torch.Tensor) -> torch.Tensor:
    """[B, L] bool: the first position and the last valid position of each row (rows with no valid: none)."""
    length = valid.sum(dim=1)  # [B]
    pos = torch.arange(valid.shape[1]).unsqueeze(0)
    has = (length > 0).unsqueeze(1)
    return has & ((pos == 0) | (pos == (length - 1).clamp(min=0).unsqueeze(1)))


def _aligned(valid: tuple[torch.Tensor, ...]) -> bool:
    """Equal shapes and validity masks: one position index is one time step in every modality."""
    return (valid[0].shape == valid[1].shape == valid[2].shape) and bool(
        torch.equal(valid[0], valid[1]) and torch.equal(valid[0], valid[2])
    )


def _on_relative_time(ref_keep: torch.Tensor, ref_len: torch.Tensor, valid: tuple[torch.Tensor, ...]) -> list:
    """Map a keep mask on the reference axis ([B, W], ``ref_len`` [B] valid positions) to every modality:
    position j of a modality with n valid positions reads the reference at floor((j + 0.5) * ref / n)."""
    out = []
    for v in valid:
        n = v.sum(dim=1).clamp(min=1).to(torch.float64).unsqueeze(1)  # [B, 1]
        pos = torch.arange(v.shape[1], dtype=torch.float64).unsqueeze(0) + 0.5
        idx = torch.floor(pos * ref_len.to(torch.float64).unsqueeze(1) / n).long()
        idx = idx.clamp(min=0, max=max(ref_keep.shape[1] - 1, 0))
        out.append(torch.gather(ref_keep, 1, idx) if ref_keep.shape[1] else torch.ones_like(v))
    return out


def _block_hole(length: torch.Tensor, rate: torch.Tensor, width: int, g: torch.Generator) -> torch.Tensor:
    """[B, width] bool: one block of round((L - 2) * rate) positions starting uniformly in
    [1, L - 1 - block] (never position 0 or L - 1)."""
    block = torch.round((length - 2).clamp(min=0).to(torch.float64) * rate.to(torch.float64)).long()
    span = (length - 1 - block).clamp(min=1)  # number of allowed starts
    start = 1 + torch.floor(_uniform((length.shape[0],), g) * span).long()
    pos = torch.arange(width).unsqueeze(0)
    return (pos >= start.unsqueeze(1)) & (pos < (start + block).unsqueeze(1))


def draw_masks(
    text_mask: torch.Tensor,
    audio_mask: torch.Tensor,
    video_mask: torch.Tensor,
    spec: MissingSpec,
    generator: torch.Generator,
) -> MissingMasks:
    """Draw which valid positions are dropped. Masks are [B, L_n] (bool or 0/1; True = valid position)."""
    valid = tuple(m.to(torch.bool).cpu() for m in (text_mask, audio_mask, video_mask))
    mode = spec.mode
    draw = _KEEP.get(mode, _keep_smm)
    keep = draw(valid, spec, generator)
    if spec.protect_text_ends:
        keep[0] = keep[0] | _ends(valid[0])
        if mode in ("tmfm", "stmfm") and _aligned(valid):  # the shared time mask keeps every modality's ends
            keep[1] = keep[1] | _ends(valid[0])
            keep[2] = keep[2] | _ends(valid[0])
    kept = tuple(k & v for k, v in zip(keep, valid, strict=True))
    dropped = tuple(~k & v for k, v in zip(keep, valid, strict=True))
    return MissingMasks(kept=kept, dropped=dropped, spec=spec)  # type: ignore[arg-type]


Valid = tuple[torch.Tensor, ...]


def _keep_rmfm(valid: Valid, spec: MissingSpec, g: torch.Generator) -> list[torch.Tensor]:
    """Each position dropped on its own, at a rate per sample and modality."""
    B, lens, r = valid[0].shape[0], [v.shape[1] for v in valid], spec.rate
    if r is None:
        per_mod = _uniform((B, 3), g) * spec.max_train_rate  # [B, 3] rate per sample and modality
        rate = torch.cat([per_mod[:, i : i + 1].expand(B, n) for i, n in enumerate(lens)], dim=1)
    else:
        rate = torch.full((B, sum(lens)), float(r))
    u = _uniform((B, sum(lens)), g)  # one joint draw over [text | audio | video] positions
    return list(torch.split(u >= rate, lens, dim=1))


def _keep_rmfm_same(valid: Valid, spec: MissingSpec, g: torch.Generator) -> list[torch.Tensor]:
    """Each position dropped on its own, at one rate per sample for every modality (or one per modality)."""
    B, lens, r = valid[0].shape[0], [v.shape[1] for v in valid], spec.rate
    if r is None:
        rates = (_uniform((B, 1), g) * spec.max_train_rate,) * 3
    elif isinstance(r, tuple):
        rates = tuple(torch.full((B, 1), float(x)) for x in r)
    else:
        rates = (torch.full((B, 1), float(r)),) * 3
    return [_uniform((B, n), g) >= rates[i] for i, n in enumerate(lens)]  # separate draws t, a, v


def _keep_rmm(valid: Valid, spec: MissingSpec, g: torch.Generator) -> list[torch.Tensor]:
    """Whole modalities dropped, each at the sample's rate."""
    B, lens, r = valid[0].shape[0], [v.shape[1] for v in valid], spec.rate
    rate = _uniform((B, 1), g) * spec.max_train_rate if r is None else torch.full((B, 1), float(r))
    on = _uniform((B, 3), g) >= rate  # [B, 3] modality kept
    return [on[:, i : i + 1].expand(B, n) for i, n in enumerate(lens)]


def _keep_time(valid: Valid, spec: MissingSpec, g: torch.Generator) -> list[torch.Tensor]:
    """TMFM (time steps dropped in every modality at once) and STMFM (one contiguous hole in time)."""
    B, lens, r = valid[0].shape[0], [v.shape[1] for v in valid], spec.rate
    aligned = _aligned(valid)
    # Reference axis: the text positions for aligned data, else each sample's longest modality.
    ref_len = valid[0].sum(dim=1) if aligned else torch.stack([v.sum(dim=1) for v in valid], 1).amax(1)
    width = lens[0] if aligned else int(ref_len.max()) if B else 0
    if spec.mode == "tmfm":
        rate = _uniform((B, 1), g) * spec.max_train_rate if r is None else torch.full((B, 1), float(r))
        shared = _uniform((B, width), g) >= rate
        if spec.protect_text_ends and aligned:
            shared = shared | _ends(valid[0])
    else:
        rate = _uniform((B,), g) * spec.max_train_rate if r is None else torch.full((B,), float(r))
        shared = ~_block_hole(ref_len, rate, width, g)
    return [shared] * 3 if aligned else _on_relative_time(shared, ref_len, valid)


def _keep_smm(valid: Valid, spec: MissingSpec, g: torch.Generator) -> list[torch.Tensor]:
    """One availability condition per sample (drawn, or the spec's)."""
    B, lens = valid[0].shape[0], [v.shape[1] for v in valid]
    names = list(CONDITIONS)
    if spec.condition is not None:
        on = torch.tensor(CONDITIONS[spec.condition], dtype=torch.bool).unsqueeze(0).expand(B, 3)
    else:
        idx = torch.floor(_uniform((B,), g) * len(names)).long().clamp(max=len(names) - 1)
        on = torch.tensor([CONDITIONS[names[int(i)]] for i in idx], dtype=torch.bool).view(B, 3)
    return [on[:, i : i + 1].expand(B, n) for i, n in enumerate(lens)]


_KEEP = {
    "rmfm": _keep_rmfm,
    "rmfm_same": _keep_rmfm_same,
    "rmm": _keep_rmm,
    "tmfm": _keep_time,
    "stmfm": _keep_time,
    "smm": _keep_smm,
}


def apply_masks(
    batch: dict[str, Any],
    masks: MissingMasks,
    *,
    text_token_ids: bool = False,
    unk_id: int = UNK_ID,
    update_avail: bool = True,
) -> dict[str, Any]:
    """A new batch with dropped positions replaced: zero vectors, or [UNK] for token-id text.

    ``batch`` follows the training contract (``text``/``audio``/``video`` [B, L_n, D_n], masks [B, L_n],
    ``present`` [B, 3], optional ``avail`` [B, 3]). Other keys are passed through. ``avail`` is set when
    ``update_avail`` is true: the incoming ``avail`` (or ``present``) times "kept at least one position".
    """
    out = dict(batch)
    for i, m in enumerate(MODALITIES):
        x = batch[m]
        kept = masks.kept[i].to(x.device)
        dropped = masks.dropped[i].to(x.device)
        if m == "text" and text_token_ids:
            out[m] = torch.where(dropped, torch.full_like(x, unk_id), x)  # ids [B, L]
        else:
            out[m] = x * kept.unsqueeze(-1).to(x.dtype)
    if update_avail:
        base = batch.get("avail", batch.get("present"))
        if base is None:
            base = torch.ones(masks.kept[0].shape[0], 3)
        out["avail"] = base.to(torch.float32) * masks.any_kept().to(base.device)
    return out


class MissingAugmenter:
    """Training augmentation for any model: a fresh seeded mask for every batch.

    ``aug(batch) -> (masked_batch, masks)``. The generator advances across calls, so one seed gives
    one reproducible sequence of masks.
    """

    def __init__(
        self, spec: MissingSpec, seed: int = 0, text_token_ids: bool = False, update_avail: bool = True
    ) -> None:
        self.spec = spec
        self.generator = torch.Generator().manual_seed(seed)
        self.text_token_ids = text_token_ids
        self.update_avail = update_avail

    def __call__(self, batch: dict[str, Any]) -> tuple[dict[str, Any], MissingMasks]:
        masks = draw_masks(
            batch["text_mask"], batch["audio_mask"], batch["video_mask"], self.spec, self.generator
        )
        return apply_masks(
            batch, masks, text_token_ids=self.text_token_ids, update_avail=self.update_avail
        ), masks
