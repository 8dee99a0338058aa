"""The fusion backend interface: padded per-modality features + masks + availability -> probabilities.

A backend is built from a loaded fusion model (``torch.nn.Module``, e.g. CM-ARR) and a stable model id
(checkpoint hash, or a hash of the untrained weights) that keys any compiled artefact. Every backend is
batch-capable: B > 1 rows are independent windows (several streams batched together).

Constructor contract for every backend class: ``Backend(model, model_id, **options)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from models.modalities import MODALITIES


@dataclass
class FusionInputs:
    """Padded batch. text [B, Lt, Dt] float32, text_mask [B, Lt] bool (True = valid); same for audio and
    video; avail [B, 3] float32 in (text, audio, video) order, 1 = usable, 0 = reconstruct."""

    text: np.ndarray
    text_mask: np.ndarray
    audio: np.ndarray
    audio_mask: np.ndarray
    video: np.ndarray
    video_mask: np.ndarray
    avail: np.ndarray

    @property
    def batch(self) -> int:
        return int(self.avail.shape[0])

    def feed(self) -> dict[str, np.ndarray]:
        return {
            "text": self.text,
            "text_mask": self.text_mask,
            "audio": self.audio,
            "audio_mask": self.audio_mask,
            "video": self.video,
            "video_mask": self.video_mask,
            "avail": self.avail,
        }

    @classmethod
    def from_samples(cls, samples: list[dict[str, np.ndarray]], dims: dict[str, int]) -> FusionInputs:
        """Pad a list of per-window samples. Each sample maps a modality to [L, D] float32 (L may be 0)
        and "avail" to a 3-vector. A modality with no rows gets one zero row with mask False."""
        b = len(samples)
        if b == 0:
            raise ValueError("FusionInputs.from_samples needs at least one sample")
        out: dict[str, np.ndarray] = {}
        for m in MODALITIES:
            lens = [int(s[m].shape[0]) for s in samples]
            length = max(1, *lens)
            x = np.zeros((b, length, dims[m]), dtype=np.float32)
            mask = np.zeros((b, length), dtype=bool)
            for i, s in enumerate(samples):
                arr = np.asarray(s[m], dtype=np.float32)
                if arr.ndim != 2 or (arr.shape[0] and arr.shape[1] != dims[m]):
                    raise ValueError(f"{m} features must be [L, {dims[m]}], got {arr.shape}")
                x[i, : arr.shape[0]] = arr
                mask[i, : arr.shape[0]] = True
            out[m], out[f"{m}_mask"] = x, mask
        avail = np.stack([np.asarray(s["avail"], dtype=np.float32).reshape(3) for s in samples])
        return cls(avail=avail, **out)

    @classmethod
    def concat(cls, parts: list[FusionInputs]) -> FusionInputs:
        """Stack padded batches (e.g. windows of different streams) into one, padding every modality to the
        longest; padded positions are masked out, so each row's result is unchanged."""
        if not parts:
            raise ValueError("FusionInputs.concat needs at least one batch")
        out: dict[str, np.ndarray] = {}
        for m in MODALITIES:
            length = max(getattr(p, m).shape[1] for p in parts)
            xs, ms = [], []
            for p in parts:
                x, mk = getattr(p, m), getattr(p, f"{m}_mask")
                pad = length - x.shape[1]
                xs.append(np.pad(x, ((0, 0), (0, pad), (0, 0))) if pad else x)
                ms.append(np.pad(mk, ((0, 0), (0, pad))) if pad else mk)
            out[m], out[f"{m}_mask"] = np.concatenate(xs), np.concatenate(ms)
        return cls(avail=np.concatenate([p.avail for p in parts]), **out)


@dataclass
class FusionResult:
    logits: np.ndarray  # [B, C]
    probs: np.ndarray  # [B, C], softmax of logits


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class FusionBackend(ABC):
    name: str = "abstract"

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    @abstractmethod
    def infer(self, inputs: FusionInputs) -> FusionResult:
        """Run fusion on a padded batch (blocking; the engine calls it off the event loop)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions / device memory."""

    def health(self) -> tuple[bool, str]:
        """(ok, reason): whether the backend can serve now; the reason says why not ("" when ok). A
        plain backend cannot watch its own calls and reports ok; ``BatchingBackend`` reports a stuck call."""
        return True, ""

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "model_id": self.model_id}
