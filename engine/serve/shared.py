"""The models that every stream of one server process shares: loaded once, used by many engines.

Shared (read-only at inference, safe across threads): the Whisper model (recognition and speech
features), the text encoder, the face detector and expression model, the fusion model, and one
``BatchingBackend`` so that windows of different streams are fused in one backend call. Per stream
(state that belongs to one stream): the VAD's recurrent state, the tracked face, the ASR word lists,
the window schedule. ``Engine`` forks the face extractor per stream.
"""

from __future__ import annotations

from typing import Any

from engine.backends import BatchingBackend
from engine.config import EngineConfig, build_engine_config
from engine.engine import Engine, load_extractors
from engine.sources.push import PushSource
from engine.stages.fusion import FusionModel, build_backend, check_checkpoint, load_fusion_model
from models.config_io import apply_overrides, from_dict, to_dict


class SharedModels:
    def __init__(self, cfg: EngineConfig, max_batch: int = 16, max_wait_ms: float = 2.0) -> None:
        self.cfg = cfg
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.extractors: Any = None
        self.fusion: FusionModel | None = None
        self.backend: BatchingBackend | None = None

    @classmethod
    def from_files(
        cls, config: str | None, overrides: list[str], max_batch: int, max_wait_ms: float
    ) -> SharedModels:
        cfg = build_engine_config(config, overrides)
        check_checkpoint(cfg)  # a missing checkpoint fails before anything loads
        return cls(cfg, max_batch, max_wait_ms)

    def load(self) -> None:
        """Blocking: every model, warmed up."""
        self.extractors = load_extractors(self.cfg)
        try:
            ex = self.extractors
            self.fusion = load_fusion_model(self.cfg, ex.describe(), ex.dims)
            self.backend = BatchingBackend(
                build_backend(self.fusion, self.cfg), self.max_batch, self.max_wait_ms
            )
        except BaseException:
            self.extractors.close()
            raise

    @property
    def loaded(self) -> bool:
        return self.backend is not None

    def stream_config(self, stream: str, overrides: list[str]) -> EngineConfig:
        """The server's engine config with one stream's name and (whitelisted) overrides."""
        data = apply_overrides(to_dict(self.cfg), overrides)
        data["stream"] = stream  # as given: never parsed as YAML
        return from_dict(EngineConfig, data, where="stream overrides")

    def engine(self, cfg: EngineConfig, source: PushSource) -> Engine:
        assert self.loaded, "load() first"
        return Engine(
            cfg,
            [source],
            extractors=self.extractors,
            fusion=self.fusion,
            backend=self.backend,
            keep_events=True,
            announce_untrained=False,
        )

    def describe(self) -> dict[str, Any]:
        fm = self.fusion
        return {
            "model": fm.identity if fm else None,
            "trained": bool(fm and fm.trained),
            "extractors": self.cfg.extractors,
            "backend": self.cfg.backend.name,
        }

    def close(self) -> None:
        if self.backend is not None:
            self.backend.stop()
        if self.extractors is not None:
            self.extractors.close()
