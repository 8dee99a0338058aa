"""Fusion stage: the fusion model (trained checkpoint or untrained CM-ARR), its backend, normalisation,
and the check that a checkpoint was trained on the extractors the engine runs."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.backends import FusionBackend, FusionInputs, create_backend
from engine.backends.base import softmax
from engine.config import SHIPPED_CHECKPOINT, EngineConfig, resolve_path
from models.families import family
from models.fusion_meta import ExpertHead, calibrate_probs
from models.modalities import MODALITIES

UNTRAINED = "untrained"


class ProfileMismatchError(ValueError):
    """The checkpoint was trained on features from other extractors than the engine's."""


@dataclass(kw_only=True)
class FusionModel:
    """The fusion model the engine runs, with what its checkpoint says about reading it."""

    model: torch.nn.Module
    identity: str  # checkpoint identity ("cmarr:<sha12>") or "untrained"
    cache_key: str  # keys exported graphs: checkpoint sha256, or a hash of the untrained weights
    trained: bool
    class_names: tuple[str, ...]
    dims: dict[str, int]
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # modality -> (mean, std)
    extra: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0  # calibrated probabilities: softmax(logits / temperature)
    experts: dict[str, ExpertHead] = field(default_factory=dict)  # single-modality heads ("speech", "text")
    licence: str = ""
    face_temperature: float = 1.0  # the face expert's calibration (FusionMeta.calibrate_face)
    fusion_rule: str = ""  # how the model combines its experts ("" for models with one reading)

    def calibrate_face(self, probs: np.ndarray) -> np.ndarray:
        return calibrate_probs(probs, self.face_temperature)


def _weights_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        buf = io.BytesIO()
        np.save(buf, v.detach().cpu().numpy())
        h.update(buf.getvalue())
    return h.hexdigest()


def checkpoint_path(cfg: EngineConfig) -> Path:
    """The existing checkpoint file ``cfg`` names, or FileNotFoundError saying how to get one."""
    path = resolve_path(cfg.checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint not found: {cfg.checkpoint}. The shipped model is {SHIPPED_CHECKPOINT} (rebuild "
            "it with `make train-offline`); pass --checkpoint PATH for another trained model, or "
            "--checkpoint none for an untrained one."
        )
    return path


def check_checkpoint(cfg: EngineConfig) -> Path | None:
    """The checkpoint file ``cfg`` names (None: untrained), or FileNotFoundError saying how to get one,
    or CheckpointFileError (a ValueError) for a file that is not a readable checkpoint. Cheap (the
    header is read): command-line tools call it before loading any model."""
    if not cfg.checkpoint:
        return None
    from models.checkpoint import read_metadata

    path = checkpoint_path(cfg)
    read_metadata(path)  # the header only: an unreadable file (CheckpointFileError) fails here too
    return path


def load_fusion_model(
    cfg: EngineConfig, extractor_description: dict[str, Any], dims: dict[str, int]
) -> FusionModel:
    """The trained checkpoint of ``cfg.checkpoint`` (refused when its extractor profile differs), or an
    untrained CM-ARR sized for the extractors."""
    if cfg.checkpoint:
        return _trained_model(cfg, extractor_description, dims)
    return _untrained_model(cfg, dims)


def _trained_model(
    cfg: EngineConfig, extractor_description: dict[str, Any], dims: dict[str, int]
) -> FusionModel:
    from models.checkpoint import load_fusion_checkpoint

    path = checkpoint_path(cfg)
    ck = load_fusion_checkpoint(path)  # one read: weights, metadata and the file's hash
    info = ck.meta
    assert info is not None
    _check_profile(path, ck.config, info, extractor_description, dims)
    model, identity, key = ck.model.eval(), ck.identity, ck.sha256
    rule = apply_fusion_rule(model, cfg.fusion.rule, f"checkpoint {path.name}")
    if rule and rule != getattr(ck.config, "fusion_rule", rule):  # not the checkpoint's own rule: say so
        identity = f"{identity}+{rule}"
    if rule:
        key = f"{key}-{rule}"  # the exported graph differs per rule
    weights = expert_weights(cfg)
    for name, w in weights.items():
        set_expert_weight(model, name, w, rule)
        identity, key = f"{identity}+{name}{w:g}", f"{key}-{name}{w:g}"
    if weights:  # the exponent table itself keys the exported graph, not only the values asked for
        table = model.product_gate.detach().cpu().numpy().tobytes()
        key = f"{key}-{hashlib.sha256(table).hexdigest()[:8]}"
    return FusionModel(
        model=model,
        identity=identity,
        cache_key=key,
        trained=True,
        class_names=info.class_names,
        dims=dims,
        stats=info.stats(),
        extra=ck.extra,
        temperature=info.temperature,
        experts=info.experts,
        licence=info.licence,
        face_temperature=info.face_temperature,
        fusion_rule=rule,
    )


def _check_profile(
    path: Path, c: Any, info: Any, extractor_description: dict[str, Any], dims: dict[str, int]
) -> None:
    """The checkpoint's features must be the engine's: the same extractor profile, the same sizes."""
    from models.encoders.profile import profile_mismatches

    recorded = info.extractor_profile
    diffs = profile_mismatches(recorded, extractor_description)
    if diffs:
        raise ProfileMismatchError(
            f"checkpoint {path.name} was trained with extractor profile "
            f"{recorded.get('name')!r} but the engine runs {extractor_description.get('name')!r}; "
            "features would not match:\n  "
            + "\n  ".join(diffs[:12])
            + "\nRun the engine with the checkpoint's profile (extractors: ...) or retrain."
        )
    got = {"text": c.text_dim, "audio": c.audio_dim, "video": c.video_dim}
    if got != dims or info.dims != dims:
        raise ProfileMismatchError(
            f"checkpoint feature sizes {got} (normalisation {info.dims}) differ from the "
            f"extractors' {dims}"
        )


def _untrained_model(cfg: EngineConfig, dims: dict[str, int]) -> FusionModel:
    """A model built from ``cfg.model_config`` with the seed's weights, sized for the extractors."""
    from models.config_io import from_dict, load_yaml, to_dict

    data = dict(load_yaml(resolve_path(cfg.model_config)))
    model_cls, cfg_cls = family(str(data.pop("model_type", "cmarr")), where=str(cfg.model_config))
    mc = from_dict(
        cfg_cls,
        {**data, "text_dim": dims["text"], "audio_dim": dims["audio"], "video_dim": dims["video"]},
        where=str(cfg.model_config),
    )
    torch.manual_seed(cfg.seed)
    model = model_cls(mc).eval()
    rule = apply_fusion_rule(model, cfg.fusion.rule, str(cfg.model_config))
    for name, w in expert_weights(cfg).items():
        set_expert_weight(model, name, w, rule)
    key = "untrained-" + hashlib.sha256(
        (str(to_dict(mc)) + _weights_hash(model) + rule).encode()
    ).hexdigest()[:24]
    return FusionModel(model=model, identity=UNTRAINED, cache_key=key, trained=False,
                       class_names=tuple(mc.class_names), dims=dims, fusion_rule=rule)


# expert -> (its column in the product's [8, 3] exponent table, the availability rows 4*t + 2*a + v it
# weighs in): text wherever words meet another modality (tv, ta, tav); speech wherever a voice meets a
# face (av, tav). Speech with its own words alone (ta) keeps the checkpoint's exponent: there the
# attention path, fitted on real speech-with-words pairs, is scaled against it.
EXPERT_ROWS = {"text": (0, (5, 6, 7)), "speech": (1, (3, 7))}


def expert_weights(cfg: EngineConfig) -> dict[str, float]:
    """The exponents the config sets (``fusion.text_weight``, ``fusion.speech_weight``), by expert."""
    asked = {"text": cfg.fusion.text_weight, "speech": cfg.fusion.speech_weight}
    return {name: float(w) for name, w in asked.items() if w is not None}


def set_expert_weight(model: torch.nn.Module, expert: str, weight: float, rule: str) -> None:
    """The product rule's exponent of ``expert`` in the availability sets of ``EXPERT_ROWS``."""
    if rule != "product":
        raise ValueError(f"fusion.{expert}_weight applies to the product rule; this model fuses by {rule!r}")
    col, rows = EXPERT_ROWS[expert]
    gate = model.product_gate  # type: ignore[attr-defined]
    with torch.no_grad():
        for row in rows:
            gate[row, col] = weight


def apply_fusion_rule(model: torch.nn.Module, rule: str, where: str) -> str:
    """Set ``rule`` ("checkpoint" keeps the model's own) on a model that has a choice of fusion rule;
    returns the rule in force ("" for a model with one reading). ValueError for a rule it cannot take."""
    has_rules = bool(getattr(getattr(model, "config", None), "pooled_skip", False))
    if not has_rules:
        if rule != "checkpoint":
            raise ValueError(
                f"fusion.rule={rule}: {where} has no per-modality experts to combine (one reading only); "
                "use fusion.rule=checkpoint"
            )
        return ""
    if rule != "checkpoint":
        model.set_fusion_rule(rule)  # type: ignore[operator]
    return str(model.fusion_rule)


def build_backend(fm: FusionModel, cfg: EngineConfig) -> FusionBackend:
    b = cfg.backend
    return create_backend(b.name, fm.model, fm.cache_key, **b.options())


class FusionStage:
    def __init__(self, fm: FusionModel, backend: FusionBackend) -> None:
        self.fm = fm
        self.backend = backend

    def normalise(self, m: str, x: np.ndarray) -> np.ndarray:
        if m in self.fm.stats and len(x):
            mean, std = self.fm.stats[m]
            return ((x - mean) / std).astype(np.float32)
        return x.astype(np.float32, copy=False)

    def __call__(self, feats: dict[str, np.ndarray], avail: np.ndarray) -> np.ndarray:
        """feats: modality -> [L, D] (rows of usable modalities); avail: [3]. Returns probs [C]."""
        sample: dict[str, np.ndarray] = {"avail": np.asarray(avail, np.float32)}
        for i, m in enumerate(MODALITIES):
            x = feats.get(m)
            if x is None or not avail[i]:
                x = np.zeros((0, self.fm.dims[m]), np.float32)  # masked out; the model reconstructs it
            sample[m] = self.normalise(m, x)
        res = self.backend.infer(FusionInputs.from_samples([sample], self.fm.dims))
        if self.fm.temperature == 1.0:
            return res.probs[0]
        return softmax(np.asarray(res.logits[0], np.float64) / self.fm.temperature).astype(np.float32)


class EMASmoother:
    """p_t = a * p_{t-1} + (1 - a) * p_new; a window without probabilities leaves the state unchanged."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.state: np.ndarray | None = None

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        if self.alpha <= 0 or self.state is None:
            self.state = probs.copy()
        else:
            self.state = self.alpha * self.state + (1 - self.alpha) * probs
        return self.state
