"""CIDer: WSAM + per-modality GRU + Multimodal Composite Transformer (MCT), with reconstruction heads.

Imports only torch. Shapes: B batch, L_t / L_a / L_v input lengths, D_n feature sizes, d the model
width, H heads, C classes. Modality order is (text, audio, video) everywhere; ``avail`` is a [B, 3]
float mask (1 = use, 0 = missing).

Pipeline (one graph for any lengths and any availability mask):

1. Conv1d projection of each modality to width d, plus a sinusoidal positional encoding indexed by the
   position along the sequence (0 .. L_n - 1). The public code indexes its positional table by the
   batch position instead; that is a bug and is not copied.
2. WSAM (word-level self-aligned attention): single-head attention whose queries are the text tokens and
   whose keys/values are the audio (resp. video) frames. Its output has the text length, so audio and
   video are brought to word level at O(L_t * L_a) cost and no alignment is needed.
3. One GRU per modality over the word-level sequences (forward direction only: trailing padding cannot
   leak into valid positions).
4. MCT: one transformer over the concatenated 3*L_t word-level tokens. The QKV projection is shared; the
   attention is computed under seven masks, one per modality subset (LAV, LA, LV, AV, L, A, V), where a
   query only sees keys of the subset and only queries of the subset get an output. Each modality's
   token summary concatenates the outputs of the four subsets that contain it and maps them back to d
   with a per-modality linear layer.
5. Attention pooling per modality over the word-level positions, a residual MLP over the concatenated
   summaries (the joint representation, [B, 3d]) and a linear classifier.
6. Reconstruction heads map the MCT tokens back to input space: text at its own positions; audio and
   video frames through the transposed WSAM attention (frame j gathers the words that attended to it).
   They are trained by MSSD on dropped positions only.

Missing inputs (avail = 0) are replaced with zeros by ``torch.where`` before anything reads them and are
masked out as attention keys, so their values (even NaN) cannot reach any output. Word-level slot 0
always exists, so audio and video can still be summarised when no text arrives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from models.cider.configuration_cider import CIDerConfig

MODALITY_ORDER = ("text", "audio", "video")
# The seven MCT attention variants as modality index subsets: LAV, LA, LV, AV, L, A, V.
SUBSETS: tuple[tuple[int, ...], ...] = ((0, 1, 2), (0, 1), (0, 2), (1, 2), (0,), (1,), (2,))
SUBSET_NAMES: tuple[str, ...] = ("LAV", "LA", "LV", "AV", "L", "A", "V")
NEG = -1e9  # finite "minus infinity": keeps fully masked rows NaN-free


def sinusoidal_encoding(length: int | torch.Tensor, d: int, base: float, like: torch.Tensor) -> torch.Tensor:
    """[L, d] sinusoidal encoding of positions 0..L-1 (sin on even channels, cos on odd ones)."""
    pos = torch.cumsum(torch.ones_like(like[0, :, 0]), dim=0) - 1.0  # [L] positions, dynamic length
    i = torch.arange(0, d, 2, device=like.device, dtype=like.dtype)  # [d/2]
    freq = torch.exp(-math.log(base) * i / d)
    ang = pos.unsqueeze(1) * freq.unsqueeze(0)  # [L, d/2]
    return torch.stack([torch.sin(ang), torch.cos(ang)], dim=-1).reshape(ang.shape[0], d)


def masked_softmax(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to ``allowed``; rows with nothing allowed are all zero."""
    p = torch.softmax(scores.masked_fill(~allowed, NEG), dim=-1) * allowed.to(scores.dtype)
    return p / p.sum(dim=-1, keepdim=True).clamp(min=1e-12)


class Projection(nn.Module):
    """Conv1d D_n -> d over time, plus the positional encoding: [B, L, D] -> [B, L, d]."""

    def __init__(self, in_dim: int, d: int, kernel: int, base: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_dim, d, kernel_size=kernel, padding=kernel // 2)
        self.d, self.base = d, base

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x * mask.unsqueeze(-1).to(x.dtype)  # padding never leaks into the convolution
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return h + sinusoidal_encoding(h.shape[1], self.d, self.base, h).unsqueeze(0)


class WSAM(nn.Module):
    """Text-queried single-head attention: (text [B, L_t, d], other [B, L_o, d]) -> [B, L_t, d].

    Also returns the raw scores [B, L_t, L_o] so reconstruction can map word-level tokens back to frames.
    """

    def __init__(self, d: int, dropout: float) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.ln = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        self.scale = 1.0 / math.sqrt(d)

    def forward(
        self, text: torch.Tensor, other: torch.Tensor, key_ok: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.matmul(self.q(text), self.k(other).transpose(1, 2)) * self.scale  # [B, L_t, L_o]
        attn = masked_softmax(scores, key_ok.unsqueeze(1))
        return self.ln(torch.matmul(self.drop(attn), self.v(other))), scores


def subset_contexts(
    scores: torch.Tensor, v: torch.Tensor, key_ok: torch.Tensor, mod: torch.Tensor, drop: nn.Module
) -> list[torch.Tensor]:
    """The seven subset attentions of one MCT layer from one exponential and three partial products.

    scores [B, H, N, N], v [B, H, N, hd], key_ok [B, N] bool, mod [N] modality of every token. For each
    subset S (``SUBSETS``) the context is softmax over the keys of S (and key_ok) times v, for queries in
    S; other rows are 0, as are rows with no allowed key. Per modality block m of keys: M_m = the row
    maximum, E_m = exp(scores - M_m) on allowed keys, P_m = E_m v_m, Z_m = sum E_m; then
    ctx_S = sum_{m in S} e^{M_m - M_S} P_m / sum_{m in S} e^{M_m - M_S} Z_m with M_S = max_{m in S} M_m,
    which is the masked softmax of every subset, exactly and without overflow, at the cost of one.
    Attention dropout drops entries of E (one draw shared by the seven subsets).
    """
    n = scores.shape[-1] // 3  # tokens come in three blocks of L: text, audio, video
    blocks = [(mod == m) for m in range(3)]  # [N] bool each
    maxes, parts, sums = [], [], []
    for m in range(3):
        ok = key_ok[:, None, None, m * n : (m + 1) * n]  # [B, 1, 1, L]
        s_m = scores[..., m * n : (m + 1) * n].masked_fill(~ok, NEG)
        m_m = s_m.amax(dim=-1, keepdim=True)  # [B, H, N, 1]; NEG when the block has no allowed key
        e = torch.exp(s_m - m_m) * ok.to(scores.dtype)
        sums.append(e.sum(dim=-1, keepdim=True))
        parts.append(torch.matmul(drop(e), v[:, :, m * n : (m + 1) * n]))  # [B, H, N, hd]
        maxes.append(m_m)
    out = []
    for sub in SUBSETS:
        m_s = torch.stack([maxes[m] for m in sub]).amax(dim=0)
        w = [torch.exp(maxes[m] - m_s) for m in sub]
        num = sum(wi * parts[m] for wi, m in zip(w, sub, strict=True))
        den = sum(wi * sums[m] for wi, m in zip(w, sub, strict=True))
        rows = torch.zeros_like(mod, dtype=torch.bool)
        for m in sub:
            rows = rows | blocks[m]
        out.append(num / den.clamp(min=1e-12) * rows[None, None, :, None].to(scores.dtype))
    return out


class MCTLayer(nn.Module):
    """Pre-LN composite transformer layer over [B, 3*L, d] tokens (blocks of L per modality)."""

    def __init__(self, d: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)  # shared by all seven variants
        # Per-modality summary: concat of the 4 variants containing the modality -> d.
        self.summary = nn.ModuleList([nn.Linear(4 * d, d) for _ in range(3)])
        self.ln2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(
            nn.Linear(d, ff_mult * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_mult * d, d)
        )
        self.drop = nn.Dropout(dropout)
        # For each modality, the indices into SUBSETS of the variants that contain it (order fixed).
        self.variants_of = [[s for s, sub in enumerate(SUBSETS) if m in sub] for m in range(3)]

    def forward(
        self, x: torch.Tensor, key_ok: torch.Tensor, mod: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, 3L, d]; key_ok [B, 3L] bool; mod [3L] modality id of every token (0 text, 1 audio, 2 video).
        Returns (tokens [B, 3L, d], raw scores [B, H, 3L, 3L])."""
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, self.hd).transpose(1, 2) for t in (q, k, v))  # [B, H, 3L, hd]
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.hd)  # [B, H, 3L, 3L]
        ctxs = subset_contexts(scores, v, key_ok, mod, self.drop)
        ctxs = [c.transpose(1, 2).reshape(b, n, d) for c in ctxs]  # rows outside the subset are 0
        outs = []
        for m in range(3):
            sel = (mod == m).to(x.dtype)[None, :, None]  # [1, 3L, 1]
            cat = torch.cat([ctxs[s] for s in self.variants_of[m]], dim=-1)  # [B, 3L, 4d]
            outs.append(self.summary[m](cat) * sel)
        h = x + self.drop(outs[0] + outs[1] + outs[2])
        h = h + self.drop(self.ff(self.ln2(h)))
        return h, scores


class AttentionPool(nn.Module):
    """Masked attention pooling [B, L, d] -> [B, d]."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.score = nn.Linear(d, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = masked_softmax(self.score(x).squeeze(-1), mask)  # [B, L]
        return torch.bmm(w.unsqueeze(1), x).squeeze(1)


@dataclass
class CIDerOutput:
    logits: torch.Tensor  # [B, C]
    representation: torch.Tensor  # [B, 3d] joint representation (after the residual MLP)
    attention: torch.Tensor  # [B, H, 3L_t, 3L_t] pre-softmax scores of the last MCT layer (shared QKV)
    attention_mask: torch.Tensor  # [B, 3L_t] bool: word-level slots that exist (padding excluded)
    tokens: torch.Tensor  # [B, 3, L_t, d] MCT output tokens per modality
    reconstruction: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # [B, L_n, D_n] per modality
    avail: torch.Tensor  # [B, 3]


class CIDer(nn.Module):
    OUTPUT_NAMES = ("logits", "representation")  # CIDerOutput fields an exported graph returns

    def __init__(self, config: CIDerConfig) -> None:
        super().__init__()
        self.config = c = config
        dims = c.input_dims
        self.proj = nn.ModuleDict(
            {m: Projection(dims[m], c.d_model, c.proj_kernel, c.pe_base) for m in MODALITY_ORDER}
        )
        self.wsam = nn.ModuleDict({m: WSAM(c.d_model, c.dropout) for m in ("audio", "video")})
        self.gru = nn.ModuleDict({m: nn.GRU(c.d_model, c.d_model, batch_first=True) for m in MODALITY_ORDER})
        self.modality_embedding = nn.Parameter(torch.zeros(3, c.d_model))
        nn.init.normal_(self.modality_embedding, std=0.02)
        self.mct = nn.ModuleList(
            [MCTLayer(c.d_model, c.mct_heads, c.ff_mult, c.dropout) for _ in range(c.mct_layers)]
        )
        self.ln_out = nn.LayerNorm(c.d_model)
        self.pool = nn.ModuleList([AttentionPool(c.d_model) for _ in range(3)])
        j = 3 * c.d_model
        self.mlp = nn.Sequential(
            nn.LayerNorm(j), nn.Linear(j, j), nn.GELU(), nn.Dropout(c.dropout), nn.Linear(j, j)
        )
        self.classifier = nn.Linear(j, c.num_classes)
        self.recon = nn.ModuleDict({m: nn.Linear(c.d_model, dims[m]) for m in MODALITY_ORDER})

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

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
    ) -> CIDerOutput:
        """Same inputs as CM-ARR: per modality a padded [B, L_n, D_n] sequence and its [B, L_n] validity
        mask, and the [B, 3] availability mask. ``present`` is accepted for interface parity and unused:
        CIDer's reconstruction targets come from the complete-input teacher pass (MSSD)."""
        del present
        avail = avail.to(text.dtype)
        ok = avail > 0.5  # [B, 3]
        words, word_ok, a_scores, v_scores = self._word_level(
            (text, audio, video), (text_mask, audio_mask, video_mask), ok
        )
        L = text.shape[1]
        x = torch.cat(words, dim=1)  # [B, 3L, d]
        slot = torch.zeros_like(text_mask[0], dtype=torch.int64)  # [L]
        mod = torch.cat([slot, slot + 1, slot + 2])  # [3L] modality id of every token
        key_ok = torch.cat(
            [word_ok & ok[:, 0:1], word_ok & ok[:, 1:2], word_ok & ok[:, 2:3]], dim=1
        )  # [B, 3L]
        scores = x.new_zeros(())
        for layer in self.mct:
            x, scores = layer(x, key_ok, mod)
        x = self.ln_out(x)
        tok = x.reshape(x.shape[0], 3, L, x.shape[-1])  # [B, 3, L, d]
        pooled = torch.cat([self.pool[i](tok[:, i], word_ok) for i in range(3)], dim=-1)  # [B, 3d]
        rep = pooled + self.mlp(pooled)
        logits = self.classifier(rep)
        # Reconstruction: text at its positions; frames via the transposed WSAM attention over valid words.
        rec_t = self.recon["text"](tok[:, 0])
        back_a = masked_softmax(a_scores.transpose(1, 2), word_ok.unsqueeze(1))  # [B, L_a, L_t]
        back_v = masked_softmax(v_scores.transpose(1, 2), word_ok.unsqueeze(1))
        rec_a = self.recon["audio"](torch.bmm(back_a, tok[:, 1]))
        rec_v = self.recon["video"](torch.bmm(back_v, tok[:, 2]))
        return CIDerOutput(
            logits=logits,
            representation=rep,
            attention=scores,
            attention_mask=torch.cat([word_ok, word_ok, word_ok], dim=1),
            tokens=tok,
            reconstruction=(rec_t, rec_a, rec_v),
            avail=avail,
        )

    def _word_level(
        self, xs: tuple[torch.Tensor, ...], masks: tuple[torch.Tensor, ...], ok: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """Steps 1-3: projection, WSAM and GRUs. Returns the word-level sequences [B, L_t, d] per modality
        (modality embedding added), the word slots that exist [B, L_t] (slot 0 always) and the raw WSAM
        scores of audio [B, L_t, L_a] and video [B, L_t, L_v]. ``ok`` [B, 3] bool: modality available."""
        h = []
        for i, m in enumerate(MODALITY_ORDER):
            x = torch.where(ok[:, i].view(-1, 1, 1), xs[i], torch.zeros_like(xs[i]))  # NaN-safe zeroing
            h.append(self.proj[m](x, masks[i].to(torch.bool)))
        first = torch.cumsum(torch.ones_like(masks[0], dtype=torch.int64), dim=1) == 1  # [B, L_t]
        word_ok = masks[0].to(torch.bool) | first  # slot 0 always exists
        a_ok = masks[1].to(torch.bool) & ok[:, 1:2]
        v_ok = masks[2].to(torch.bool) & ok[:, 2:3]
        a_word, a_scores = self.wsam["audio"](h[0], h[1], a_ok)  # [B, L_t, d], [B, L_t, L_a]
        v_word, v_scores = self.wsam["video"](h[0], h[2], v_ok)
        words = []
        for i, (m, seq) in enumerate(zip(MODALITY_ORDER, (h[0], a_word, v_word), strict=True)):
            g, _ = self.gru[m](seq)
            words.append(g + self.modality_embedding[i])
        return words, word_ok, a_scores, v_scores
