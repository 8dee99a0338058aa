"""Speech frame features from 16 kHz mono audio.

- ``LogMelExtractor``: no weights. 80 log-mel filterbank energies at 100 Hz (25 ms Hann window, 10 ms
  hop, frames centred at t * 10 ms), written with numpy/scipy. Normalisation per utterance (mean/std
  over the utterance) or running (exponential moving statistics carried across calls, for streaming).
- ``Wav2Vec2Extractor``: ``facebook/wav2vec2-base`` last hidden states (768-d, one frame per 20 ms,
  about 50 Hz), or a random-init model of the same architecture for tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

SAMPLE_RATE = 16000
NORMALISATIONS = ("utterance", "running", "none")
INITS = ("pretrained", "random")


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)  # HTK mel scale


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sr: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular HTK-mel filters, float32 [n_mels, n_fft // 2 + 1], each with unit peak."""
    freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


@dataclass
class LogMelConfig:
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0  # 100 frames per second
    n_fft: int = 512
    fmin: float = 20.0
    fmax: float = 7600.0
    preemphasis: float = 0.97
    normalisation: str = "utterance"  # "utterance" | "running" | "none"
    running_seconds: float = 3.0  # running: time constant of the moving mean/variance
    floor: float = 1e-6  # added to mel energies before the log

    def __post_init__(self) -> None:
        if self.n_mels < 1:
            raise ValueError(f"logmel.n_mels must be >= 1, got {self.n_mels}")
        if self.hop_ms <= 0 or self.win_ms <= 0:
            raise ValueError(f"logmel.win_ms/hop_ms must be positive, got {self.win_ms}/{self.hop_ms}")
        if self.n_fft < self.win_ms * SAMPLE_RATE / 1000:
            raise ValueError(f"logmel.n_fft {self.n_fft} is shorter than the {self.win_ms} ms window")
        if not 0 <= self.fmin < self.fmax <= SAMPLE_RATE / 2:
            raise ValueError(f"logmel needs 0 <= fmin < fmax <= 8000, got {self.fmin}, {self.fmax}")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"logmel.normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}"
            )
        if self.running_seconds <= 0:
            raise ValueError(f"logmel.running_seconds must be positive, got {self.running_seconds}")

    @property
    def frame_rate(self) -> float:
        return 1000.0 / self.hop_ms


class LogMelExtractor:
    """audio float32 [n] at 16 kHz -> float32 [T, n_mels], T = 1 + n // hop (centred frames)."""

    def __init__(self, cfg: LogMelConfig | None = None) -> None:
        from scipy.signal import get_window

        self.cfg = cfg or LogMelConfig()
        self.win = int(round(self.cfg.win_ms * SAMPLE_RATE / 1000))  # 400 samples
        self.hop = int(round(self.cfg.hop_ms * SAMPLE_RATE / 1000))  # 160 samples
        self.window = get_window("hann", self.win, fftbins=True).astype(np.float32)
        self.fbank = mel_filterbank(
            self.cfg.n_mels, self.cfg.n_fft, SAMPLE_RATE, self.cfg.fmin, self.cfg.fmax
        )
        self.dim = self.cfg.n_mels
        self.frame_rate = self.cfg.frame_rate
        self._mean: np.ndarray | None = None  # running statistics (per mel band)
        self._var: np.ndarray | None = None

    def reset(self) -> None:
        """Forget running statistics (a new stream/speaker)."""
        self._mean = self._var = None

    def log_mel(self, audio: np.ndarray) -> np.ndarray:
        """Un-normalised log-mel energies [T, n_mels]."""
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"audio must be mono [n], got shape {x.shape}")
        n = len(x)
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        if self.cfg.preemphasis:
            x = np.concatenate([x[:1], x[1:] - self.cfg.preemphasis * x[:-1]])
        half = self.win // 2
        mode = "reflect" if n > half else "constant"
        x = np.pad(x, (half, half), mode=mode)
        t = 1 + n // self.hop
        # Strided view of the frames [T, win]; padded enough that frame t starts at t * hop.
        need = (t - 1) * self.hop + self.win
        if len(x) < need:
            x = np.pad(x, (0, need - len(x)))
        frames = np.lib.stride_tricks.sliding_window_view(x, self.win)[:: self.hop][:t]
        spec = np.fft.rfft(frames * self.window, n=self.cfg.n_fft, axis=1)
        power = (spec.real**2 + spec.imag**2).astype(np.float32)  # [T, n_fft // 2 + 1]
        return np.log(power @ self.fbank.T + self.cfg.floor).astype(np.float32)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        feats = self.log_mel(audio)
        mode = self.cfg.normalisation
        if mode == "none" or len(feats) == 0:
            return feats
        if mode == "utterance":
            mean = feats.mean(0)
            std = feats.std(0)
            return ((feats - mean) / (std + 1e-5)).astype(np.float32)
        # running: blend this chunk's statistics into the moving ones with a weight set by its length
        m, v = feats.mean(0), feats.var(0)
        if self._mean is None or self._var is None:
            self._mean, self._var = m, v
        else:
            a = 1.0 - np.exp(-len(feats) / (self.cfg.running_seconds * self.frame_rate))
            delta = m - self._mean
            self._mean = self._mean + a * delta
            self._var = (1 - a) * (self._var + a * delta**2) + a * v
        return ((feats - self._mean) / np.sqrt(self._var + 1e-10)).astype(np.float32)


@dataclass
class Wav2Vec2Config:
    model: str = "facebook/wav2vec2-base"  # hub id or local folder
    init: str = "pretrained"  # "pretrained" | "random" (architecture from config_overrides)
    config_overrides: dict[str, Any] = field(default_factory=dict)
    normalize_input: bool = True  # zero-mean unit-variance waveform, as wav2vec2-base's processor does
    device: str = "cpu"
    allow_download: bool = False

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"wav2vec2.init must be one of {INITS}, got {self.init!r}")


def wav2vec2_dim(cfg: Wav2Vec2Config) -> int:
    if cfg.init == "random":
        from transformers import Wav2Vec2Config as HFConfig

        return int(HFConfig(**cfg.config_overrides).hidden_size)
    local = Path(cfg.model) / "config.json"
    if local.is_file():
        import json

        return int(json.loads(local.read_text())["hidden_size"])
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(cfg.model, local_files_only=not cfg.allow_download).hidden_size)


class Wav2Vec2Extractor:
    """audio float32 [n] at 16 kHz -> float32 [T, 768], T = conv-stack frames (n // 320 - 1 roughly)."""

    frame_rate = SAMPLE_RATE / 320.0  # the convolutional feature encoder's total stride is 320 samples

    def __init__(self, cfg: Wav2Vec2Config | None = None) -> None:
        self.cfg = cfg or Wav2Vec2Config()
        from transformers import Wav2Vec2Config as HFConfig
        from transformers import Wav2Vec2Model

        self.device = torch.device(self.cfg.device)
        if self.cfg.init == "random":
            torch.manual_seed(0)
            self.model = Wav2Vec2Model(HFConfig(**self.cfg.config_overrides))
        else:
            local_only = not self.cfg.allow_download or Path(self.cfg.model).is_dir()
            try:
                self.model = Wav2Vec2Model.from_pretrained(
                    self.cfg.model, local_files_only=local_only, use_safetensors=True
                )  # safetensors only: a pickled pytorch_model.bin can run code when it loads
            except OSError as e:
                from .text import _has_only_pickled_weights

                if "safetensors" in str(e).lower() or _has_only_pickled_weights(self.cfg.model):
                    raise RuntimeError(
                        f"wav2vec2 model {self.cfg.model!r} has no safetensors weights; only pickled "
                        "weights (pytorch_model.bin), which this project does not load. Convert it once "
                        "with `model.save_pretrained(DIR, safe_serialization=True)`."
                    ) from e
                raise RuntimeError(
                    f"wav2vec2 model {self.cfg.model!r} is not available locally. Download it once "
                    f"(`huggingface-cli download {self.cfg.model}`), set speech.wav2vec2.allow_download=true "
                    f"when online, or use the offline profile's log-mel features. Cause: {e}"
                ) from e
        self.model.to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        self._min_samples = 400  # the conv stack needs at least one 25 ms receptive field

    @torch.inference_mode()
    def __call__(self, audio: np.ndarray) -> np.ndarray:
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"audio must be mono [n], got shape {x.shape}")
        if len(x) < self._min_samples:
            return np.zeros((0, self.dim), np.float32)
        if self.cfg.normalize_input:
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        out = self.model(torch.from_numpy(x)[None].to(self.device)).last_hidden_state  # [1, T, D]
        return out[0].float().cpu().numpy()
