"""EngineConfig: typed, validated settings of the streaming engine (YAML in configs/engine/)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.backends import available_backends  # the one registry of backend names
from models.config_io import load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "engine" / "default.yaml"
# The trained model that ships with the repository (models/assets/cmarr_offline_v3.md is its card).
SHIPPED_CHECKPOINT = "models/assets/cmarr_offline_v3.safetensors"
# The fusion model families that ship, for ``--model NAME``: (trained checkpoint, architecture of the
# untrained model). CIDer's card is models/assets/cider_offline_v1.md.
MODELS: dict[str, tuple[str, str]] = {
    "cmarr": (SHIPPED_CHECKPOINT, "configs/model/cmarr_offline.yaml"),
    "cider": ("models/assets/cider_offline_v1.safetensors", "configs/model/cider_offline.yaml"),
}
NO_CHECKPOINT = ("none", "untrained", "")


def resolve_path(p: str | Path) -> Path:
    """A relative path is taken from the working directory if it exists there, else from the repo root."""
    p = Path(p).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return REPO_ROOT / p


MIN_WINDOW_S, MIN_HOP_S = 0.5, 0.1


@dataclass
class WindowConfig:
    """Windows of ``window_s`` seconds every ``hop_s`` seconds, aligned on media time. Early windows
    start at 0 (shorter); at the end of a stream a final window closes at the stream's end when at least
    ``min_final_s`` of new media arrived since the last window end."""

    window_s: float = 4.0
    hop_s: float = 1.0
    min_final_s: float = 0.25

    def __post_init__(self) -> None:
        if self.window_s < MIN_WINDOW_S or self.hop_s < MIN_HOP_S:
            raise ValueError(
                f"window_s must be >= {MIN_WINDOW_S} s and hop_s >= {MIN_HOP_S} s (each window costs a "
                f"recognition pass), got {self.window_s}, {self.hop_s}"
            )
        if self.hop_s > self.window_s:
            raise ValueError(f"hop_s {self.hop_s} > window_s {self.window_s} would skip media")
        if self.min_final_s < 0:
            raise ValueError(f"min_final_s must be >= 0, got {self.min_final_s}")


@dataclass
class AudioHealthConfig:
    min_coverage: float = 0.5  # fraction of the window covered by received samples, below -> dropout
    silence_dbfs: float = -60.0  # window RMS below this -> silence (quiet speech tails reach -50)
    vad_threshold: float = 0.5  # silero speech probability per 32 ms chunk
    min_speech_ratio: float = 0.05  # fraction of VAD chunks with speech, below -> silence (no speech)
    clip_level: float = 0.999  # |sample| at or above counts as clipped
    max_clip_ratio: float = 0.02  # fraction of clipped samples, above -> clipping

    def __post_init__(self) -> None:
        if not -120.0 <= self.silence_dbfs <= 0.0:
            raise ValueError(f"audio health silence_dbfs must be in [-120, 0] dBFS, got {self.silence_dbfs}")
        for n in ("min_coverage", "vad_threshold", "min_speech_ratio", "clip_level", "max_clip_ratio"):
            v = getattr(self, n)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"audio health {n} must be in [0, 1], got {v}")


@dataclass
class VideoHealthConfig:
    min_fps: float = 5.0  # frames per second received in the window, below -> frame-rate collapse
    dark_luma: float = 25.0  # mean luma (0..255) below -> dark
    frozen_diff: float = 0.05  # mean |frame - previous| (0..255) below for all frames -> frozen (a still
    # actor on a real camera still changes by 0.3-1 through sensor noise and compression)
    min_face_ratio: float = 0.5  # fraction of frames with a face, below -> no face
    occlusion_score: float = 0.5  # median detection score below -> occluded
    max_landmark_loss: float = 0.5  # mean fraction of keypoints lost (outside the box) above -> occluded

    def __post_init__(self) -> None:
        if self.min_fps < 0 or not 0 <= self.dark_luma <= 255 or self.frozen_diff < 0:
            raise ValueError("video health thresholds must be >= 0 (dark_luma at most 255)")
        for n in ("min_face_ratio", "occlusion_score", "max_landmark_loss"):
            v = getattr(self, n)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"video health {n} must be in [0, 1], got {v}")


@dataclass
class TextHealthConfig:
    min_words: int = 1
    # Use words the streaming policy has not confirmed yet. They carry a window's speech before the
    # commit lag has passed; the event lists them separately in ``tentative``.
    use_tentative: bool = True

    def __post_init__(self) -> None:
        if self.min_words < 1:
            raise ValueError(f"text health min_words must be >= 1, got {self.min_words}")


@dataclass
class ASRStreamConfig:
    """Streaming recognition: one decoder pass per window over its last ``span_s`` of audio
    (engine/stages/asr.py)."""

    enabled: bool = True
    agreement: int = 2  # 1: commit each pass's words at once; 2: commit what two consecutive passes agree on
    prompt_words: int = 30  # committed words before the window passed to the decoder as its prompt
    tokens_per_s: float = 8.0  # decoder budget: new tokens per second of window audio (+ 8)
    max_lag_s: float = 1.5  # live: skip a window's pass that would start this long after its audio arrived
    end_silence_s: float = 0.5  # VAD silence after speech that ends an utterance (its words are committed)
    new_speech_only: bool = (
        True  # no pass while no voiced VAD chunk is newer than a pass that heard the segment end
    )
    # Audio each pass decodes, ending at the window's end (0 or less than window.window_s: the window).
    # Longer than the window, the pass encodes its own span (the speech features keep the window's).
    # 0 by default: a 12 s span reads the held-out monologue better (WER 5.8% against 11%) but loses
    # repeated sentences (docs/engine.md), so the default decodes the window.
    span_s: float = 0.0
    repeat_limit: int = 3  # an n-gram repeated this many times in a row is cut (decoding loop)
    max_compression_ratio: float = 2.4  # new text compressing better than this is a loop: pass rejected
    no_speech_prob: float = 0.6  # with a mean log-probability under min_logprob: pass rejected as no speech
    min_logprob: float = -1.0

    def __post_init__(self) -> None:
        if self.agreement not in (1, 2):
            raise ValueError(f"asr.agreement must be 1 or 2, got {self.agreement}")
        if self.prompt_words < 0:
            raise ValueError(f"asr.prompt_words must be >= 0, got {self.prompt_words}")
        if self.tokens_per_s <= 0 or self.max_lag_s <= 0 or self.end_silence_s < 0.1:
            raise ValueError("asr.tokens_per_s and asr.max_lag_s must be > 0, asr.end_silence_s >= 0.1 s")
        if self.repeat_limit < 2:
            raise ValueError(f"asr.repeat_limit must be >= 2, got {self.repeat_limit}")
        if not 0 <= self.span_s <= 30:
            raise ValueError(
                f"asr.span_s must be in [0, 30] s (Whisper hears at most 30 s), got {self.span_s}"
            )
        if self.max_compression_ratio <= 1 or not 0 <= self.no_speech_prob <= 1:
            raise ValueError("asr.max_compression_ratio must be > 1 and asr.no_speech_prob in [0, 1]")

    def span(self, window_s: float) -> float:
        """Seconds of audio one recognition pass decodes: the span, at least the window."""
        return max(window_s, self.span_s)


# Which backend reads each BackendConfig field (name and device: all of them).
BACKEND_FIELDS = {
    "threads": ("onnxruntime", "torch"),
    "graph_optimization": ("onnxruntime",),
    "cache_dir": ("onnxruntime", "tensorrt"),
    "mode": ("torch",),
    "dtype": ("torch",),
    "precision": ("tensorrt",),
    "calibration": ("tensorrt",),
}


@dataclass
class BackendConfig:
    """The fusion backend (docs/engine.md, "Backends"). A field that the chosen backend does not read
    must stay at its default: it is refused rather than silently dropped."""

    name: str = "onnxruntime"
    device: str = "cpu"
    threads: int = 2  # onnxruntime intra-op threads / torch threads
    graph_optimization: str = "all"  # onnxruntime: disable | basic | extended | all
    cache_dir: str | None = None  # exported graphs / engines; default: the user's cache (XDG_CACHE_HOME)
    mode: str = "eager"  # torch: eager | compile | cuda_graphs
    dtype: str = "fp32"  # torch: fp32 | fp16 | bf16 (half precision on CUDA devices only)
    precision: str = "fp16"  # tensorrt: fp32 | fp16 | int8
    calibration: str | None = None  # tensorrt int8: .npz of real window inputs to calibrate on

    def __post_init__(self) -> None:  # noqa: C901 - one check per backend option
        if self.name not in available_backends():
            raise ValueError(f"backend name must be one of {available_backends()}, got {self.name!r}")
        if self.threads < 1:
            raise ValueError(f"backend.threads must be >= 1, got {self.threads}")
        if self.graph_optimization not in ("disable", "basic", "extended", "all"):
            raise ValueError(
                "backend.graph_optimization must be disable, basic, extended or all, "
                f"got {self.graph_optimization!r}"
            )
        if self.mode not in ("eager", "compile", "cuda_graphs"):
            raise ValueError(f"backend.mode must be eager, compile or cuda_graphs, got {self.mode!r}")
        if self.dtype not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"backend.dtype must be fp32, fp16 or bf16, got {self.dtype!r}")
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"backend.precision must be fp32, fp16 or int8, got {self.precision!r}")
        if self.calibration is not None and self.precision != "int8":
            raise ValueError("backend.calibration is for backend.precision=int8")
        if self.name == "tensorrt" and self.precision == "int8":
            if self.calibration is None:
                raise ValueError(
                    "backend.precision=int8 needs backend.calibration: an .npz of fusion inputs "
                    "recorded with python -m engine.calibrate"
                )
            if not resolve_path(self.calibration).is_file():
                raise ValueError(
                    f"backend.calibration {self.calibration} does not exist; record it with "
                    "python -m engine.calibrate"
                )
            self.calibration = str(resolve_path(self.calibration))
        defaults = BackendConfig.__dataclass_fields__
        for f, users in BACKEND_FIELDS.items():
            if self.name not in users and getattr(self, f) != defaults[f].default:
                raise ValueError(
                    f"backend.{f} is read by the {' and '.join(users)} backend(s), not by {self.name}; "
                    "leave it out or choose that backend"
                )

    def options(self) -> dict[str, object]:
        """The keyword options ``create_backend`` gets for this backend."""
        opts: dict[str, object] = {"device": self.device}
        for f, users in BACKEND_FIELDS.items():
            if self.name in users:
                opts["calibration_npz" if f == "calibration" else f] = getattr(self, f)
        return opts


FUSION_RULES = ("checkpoint", "product", "learned")


@dataclass
class FusionRuleConfig:
    """How a trained CM-ARR combines its experts: "checkpoint" (the rule the checkpoint ships with; the
    shipped model's is "product"), "product" (a product of the calibrated experts with the prior divided
    out, the attention path as a residual where validation on real data showed a gain) or "learned"
    (per-set expert weights fitted on validation pairs). Models without per-modality experts (CIDer, an
    untrained CM-ARR) have one reading and take only "checkpoint"."""

    rule: str = "checkpoint"
    # The product rule's exponent of the text expert wherever words meet another modality (speech, a
    # face): null keeps the checkpoint's (fitted on real speech-with-its-words pairs; the acted corpora
    # speak neutral sentences, so it is small). 1 lets words count fully, e.g. on calls, where they carry
    # the emotion too.
    text_weight: float | None = None
    # The same for the speech expert wherever a voice meets a face. Null keeps the checkpoint's
    # (1: speech is calibrated on held-out speakers of the corpora it was fitted on). On a corpus it never
    # heard it is far less often right and as sure of itself (the model card's "speech expert on speakers
    # and corpora it never heard"); below 1 a face then outweighs it.
    speech_weight: float | None = None

    def __post_init__(self) -> None:
        if self.rule not in FUSION_RULES:
            raise ValueError(f"fusion.rule must be one of {FUSION_RULES}, got {self.rule!r}")
        for name in ("text_weight", "speech_weight"):
            w = getattr(self, name)
            if w is not None and not (isinstance(w, int | float) and 0.0 <= float(w) <= 1.0):
                raise ValueError(f"fusion.{name} must be a number in [0, 1] (or null), got {w!r}")


@dataclass
class QueueConfig:
    audio_frames: int = 512  # bounded audio queue (chunks); a live source records drops when it is full
    video_frames: int = 8  # bounded video queue in lossless mode; live sources keep only the latest frame
    max_lead_s: float = 6.0  # consumers pause when this far ahead of the next window end (backpressure)
    live_wait_s: float = 1.0  # live: a window waits at most this long (wall) for a lagging modality
    sink_drain_s: float = 30.0  # on close, how long each sink may take to handle its queued events

    def __post_init__(self) -> None:
        if self.audio_frames < 1 or self.video_frames < 1:
            raise ValueError("queue sizes must be >= 1")
        if self.max_lead_s <= 0 or self.live_wait_s <= 0:
            raise ValueError("max_lead_s and live_wait_s must be > 0")
        if self.sink_drain_s < 0:
            raise ValueError(f"queues.sink_drain_s must be >= 0, got {self.sink_drain_s}")


@dataclass
class EngineConfig:
    extractors: str = (
        "offline"  # extractor profile: a name in configs/extractors ("offline", "paper") or a YAML path
    )
    # Architecture of the untrained model only (a trained checkpoint carries its own): a model YAML whose
    # ``model_type`` key (cmarr, the default, or cider) names the family.
    model_config: str = "configs/model/cmarr_offline.yaml"
    # Trained fusion .safetensors (CM-ARR or CIDer; the file says which): the shipped CM-ARR by default;
    # "none" (or null) -> an untrained, randomly initialised model whose readings mean nothing.
    checkpoint: str | None = SHIPPED_CHECKPOINT
    seed: int = 0  # random init seed of the untrained model
    stream: str = "main"
    window: WindowConfig = field(default_factory=WindowConfig)
    audio_health: AudioHealthConfig = field(default_factory=AudioHealthConfig)
    video_health: VideoHealthConfig = field(default_factory=VideoHealthConfig)
    text_health: TextHealthConfig = field(default_factory=TextHealthConfig)
    asr: ASRStreamConfig = field(default_factory=ASRStreamConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    fusion: FusionRuleConfig = field(default_factory=FusionRuleConfig)
    queues: QueueConfig = field(default_factory=QueueConfig)
    ema_alpha: float = 0.0  # probability smoothing p <- a*p_prev + (1-a)*p_new; 0 = off
    vad: bool = True
    expert: bool = True  # add the face expression model's own reading to events

    def __post_init__(self) -> None:
        if self.checkpoint is not None and str(self.checkpoint).strip().lower() in NO_CHECKPOINT:
            self.checkpoint = None
        if not 0.0 <= self.ema_alpha < 1.0:
            raise ValueError(f"ema_alpha must be in [0, 1), got {self.ema_alpha}")
        if not self.stream:
            raise ValueError("stream name must not be empty")
        if self.queues.max_lead_s <= self.window.hop_s:
            raise ValueError(
                f"queues.max_lead_s {self.queues.max_lead_s} must exceed window.hop_s {self.window.hop_s}"
            )
        if self.window.window_s > 30.0:
            raise ValueError(
                f"window.window_s is at most 30 s (one Whisper pass), got {self.window.window_s}"
            )


def load_engine_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> EngineConfig:
    return load_config(EngineConfig, resolve_path(path) if path else None, overrides)


def build_engine_config(
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    checkpoint: str | None = None,
    backend: str | None = None,
    device: str | None = None,
    model: str | None = None,
) -> EngineConfig:
    """The config of the command-line tools: ``config`` (default ``configs/engine/default.yaml``; the
    built-in defaults when that file does not exist), then ``overrides`` (``key=value``), then the
    ``checkpoint``/``backend``/``device`` shortcuts, which win over both."""
    path = Path(config) if config else DEFAULT_CONFIG
    shortcuts = engine_shortcuts(checkpoint=checkpoint, backend=backend, device=device, model=model)
    items = [*overrides, *shortcuts]
    return load_engine_config(path if path.exists() else None, items)


def engine_shortcuts(
    *,
    checkpoint: str | None = None,
    backend: str | None = None,
    device: str | None = None,
    model: str | None = None,
) -> list[str]:
    """The overrides that the ``--model``/``--checkpoint``/``--backend``/``--device`` flags stand for
    (``--model NAME``: that family's shipped checkpoint and architecture; ``--checkpoint`` wins)."""
    out = []
    if model:
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; known: {sorted(MODELS)}")
        out += [f"checkpoint={MODELS[model][0]}", f"model_config={MODELS[model][1]}"]
    if checkpoint:
        out.append(f"checkpoint={checkpoint}")
    if backend:
        out.append(f"backend.name={backend}")
    if device:
        out.append(f"backend.device={device}")
    return out
