"""Loading an engine's models: the extractors, the fusion model and its backend.

One order for every caller (an engine, a server's shared models, an evaluation): the fusion model
first, from the extractor profile's description (no weights needed), so that a checkpoint recorded with
other extractors, or a bad file, fails before any model loads; then the extractors, loaded and warmed
up; then the fusion backend, which exports the model's graph on a first run (``models.export``, about
2 s on 2 cores).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.backends import FusionBackend
from engine.config import EngineConfig, resolve_path
from engine.stages.fusion import FusionModel, build_backend, load_fusion_model


def extractor_profile(cfg: EngineConfig) -> Any:
    """The extractor bundle of ``cfg.extractors`` (a profile name or YAML path), no weights loaded."""
    from models.encoders.profile import build_extractors, load_profile

    name = cfg.extractors
    return build_extractors(
        load_profile(name if "/" not in name and not name.endswith((".yaml", ".yml")) else resolve_path(name))
    )


def load_extractors(cfg: EngineConfig) -> Any:
    """The extractor bundle of ``cfg.extractors``, every model loaded and run once (``warm_up``), so that
    the first window of a stream does not pay for lazy initialisation."""
    ex = extractor_profile(cfg)
    ex.warm_up()
    return ex


def load_fusion(cfg: EngineConfig, extractors: Any | None = None) -> FusionModel:
    """The fusion model of ``cfg``, checked against the extractors' description (``extractors``, else
    the profile's: no weights need to load for it)."""
    ex = extractors if extractors is not None else extractor_profile(cfg)
    return load_fusion_model(cfg, ex.describe(), ex.dims)


@dataclass
class LoadedModels:
    extractors: Any
    fusion: FusionModel
    backend: FusionBackend
    owns_extractors: bool  # loaded here (the caller closes them), not handed in


def load_models(
    cfg: EngineConfig,
    extractors: Any | None = None,
    fusion: FusionModel | None = None,
    backend: FusionBackend | None = None,
) -> LoadedModels:
    """Blocking: whatever of the three is not handed in, loaded for ``cfg``, the fusion model first (a
    bad checkpoint fails before any other model loads). On failure nothing loaded here is left open."""
    if fusion is None:
        fusion = load_fusion(cfg, extractors)
    owns = extractors is None
    if owns:
        extractors = load_extractors(cfg)
    if backend is None:
        try:
            backend = build_backend(fusion, cfg)
        except BaseException:
            if owns:  # a backend that fails must not leave native models for exit to trip on
                extractors.close()
            raise
    return LoadedModels(extractors, fusion, backend, owns)
