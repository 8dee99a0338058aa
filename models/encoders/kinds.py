"""The extractor kinds, registered by name, and the typed faces they show the engine.

* ``SPEECH_KINDS``: ``speech.kind`` of a profile -> how to build the extractor from its config section,
  its feature width, its frame rate and its identity (what changes its features).
* ``FACE_MODELS``: ``face.model`` -> how to build the expression model (a ``face.FaceEmbedder``), its
  (feature width, classes) and the identity of its weights.

Adding a kind is its module, one line here and a config section in ``profile.SpeechConfig`` /
``profile.FaceConfig``; ``docs/extending.md`` says how.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..config_io import to_dict
from ..files import file_sha256
from .face import FaceEmbedder
from .speech import LogMelExtractor, Wav2Vec2Extractor, wav2vec2_dim
from .whisper_states import WhisperStatesExtractor, weights_sha256, whisper_dim


@runtime_checkable
class SpeechExtractor(Protocol):
    """16 kHz mono audio [n] -> speech frames [T, D]."""

    def __call__(self, audio: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class SharedEncoderSpeech(SpeechExtractor, Protocol):
    """A speech extractor whose encoder pass the recognition pass can reuse (the Whisper states)."""

    def encode_window(self, audio: np.ndarray) -> tuple[np.ndarray, Any]: ...

    def same_encoder(self, asr: object) -> bool: ...


@dataclass(frozen=True)
class SpeechKind:
    build: Callable[[Any], SpeechExtractor]  # its config section -> the extractor
    dim: Callable[[Any], int]  # feature width, known without loading weights
    frame_rate: Callable[[Any], float]
    identity: Callable[[Any], dict[str, Any]]  # what changes its features


def _whisper_identity(c: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": "whisper",
        "weights": "sha256:" + weights_sha256(c.resolved_path()),
        "compute_type": c.compute_type,
    }
    if c.context_margin_s is not None:  # absent: padded to 30 s (profiles before it)
        out["context_margin_s"] = c.context_margin_s
    if c.context_min_s:
        out["context_min_s"] = c.context_min_s
    return out


def _wav2vec2_identity(c: Any) -> dict[str, Any]:
    out = {"kind": "wav2vec2", "model": Path(c.model).name, "init": c.init}
    out["normalize_input"] = c.normalize_input
    if c.init == "random":
        out["config_overrides"] = c.config_overrides
    return out


SPEECH_KINDS: dict[str, SpeechKind] = {
    "whisper": SpeechKind(
        WhisperStatesExtractor, whisper_dim, lambda c: WhisperStatesExtractor.frame_rate, _whisper_identity
    ),
    "logmel": SpeechKind(
        LogMelExtractor,
        lambda c: c.n_mels,
        lambda c: c.frame_rate,
        lambda c: {"kind": "logmel", **to_dict(c)},
    ),
    "wav2vec2": SpeechKind(
        Wav2Vec2Extractor, wav2vec2_dim, lambda c: Wav2Vec2Extractor.frame_rate, _wav2vec2_identity
    ),
}


@dataclass(frozen=True)
class FaceModel:
    build: Callable[[Any], FaceEmbedder]  # the face config -> the expression model
    dims: Callable[[Any], tuple[int, int]]  # (embedding width, number of classes), without loading it
    weights_id: Callable[[Any], str]  # identity of its weights


def _mini_xception(fc: Any) -> FaceEmbedder:
    from .mini_xception import MiniXceptionEmbedder

    return MiniXceptionEmbedder(fc.weights, fc.device)


def _mini_xception_dims(fc: Any) -> tuple[int, int]:
    from .mini_xception import CLASS_NAMES, FEATURE_DIM

    return FEATURE_DIM, len(CLASS_NAMES)


def _mini_xception_weights(fc: Any) -> str:
    from .mini_xception import default_weights_path

    return "sha256:" + file_sha256(Path(fc.weights) if fc.weights else default_weights_path())


def _denseface(fc: Any) -> FaceEmbedder:
    from .denseface import DenseFaceEmbedder

    return DenseFaceEmbedder(fc.weights, fc.device, random_init=fc.init == "random")


def _denseface_dims(fc: Any) -> tuple[int, int]:
    from .denseface import DenseFaceConfig, read_denseface_meta

    cfg = DenseFaceConfig()
    if fc.init != "random" and fc.weights and Path(fc.weights).is_file():
        cfg = read_denseface_meta(fc.weights)[0]  # a 4-class file appends 4 log-probabilities
    return cfg.feature_dim, cfg.num_classes


def _denseface_weights(fc: Any) -> str:
    if fc.weights is None:
        return "missing"
    p = Path(fc.weights)
    return "sha256:" + file_sha256(p) if p.is_file() else f"missing:{p.name}"


FACE_MODELS: dict[str, FaceModel] = {
    "mini_xception": FaceModel(_mini_xception, _mini_xception_dims, _mini_xception_weights),
    "denseface": FaceModel(_denseface, _denseface_dims, _denseface_weights),
}
