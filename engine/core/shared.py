"""Models loaded once and used by many engines: the clips of an evaluation
(``engine/tools/clip_evaluation.py``), the streams of a server (``engine/serve``).

Shared (read-only at inference, safe across threads): the Whisper model (recognition and speech
features), the text encoder, the face detector and expression model, the fusion model and its backend
(for a server, one ``BatchingBackend``, so that windows of different streams are fused in one call).
Per engine (state that belongs to one stream): the VAD's recurrent state, the tracked face (``Engine``
forks the face extractor), the ASR word lists, the window schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.backends import BatchingBackend, FusionBackend
from engine.config import EngineConfig
from engine.core.batched_asr import BatchingRecogniser
from engine.core.loading import load_models
from engine.engine import Engine
from engine.sources.base import Source
from engine.stages.fusion import FusionModel, build_backend, load_fusion_model


@dataclass
class SharedModels:
    extractors: Any
    fusion: FusionModel
    backend: FusionBackend
    recogniser: BatchingRecogniser | None = None  # a server's: its streams' decoder passes batched

    @classmethod
    def load(
        cls,
        cfg: EngineConfig,
        max_batch: int | None = None,
        max_wait_ms: float = 2.0,
        timeout_s: float = 30.0,
    ) -> SharedModels:
        """Blocking: every model, warmed up. ``max_batch``: batch across engines (a server): fusion with
        ``BatchingBackend`` (a fusion call that takes longer than ``timeout_s`` then fails its windows,
        ``BackendTimeout``, and makes ``health()`` report the backend stuck), and the Whisper decoder
        with ``BatchingRecogniser``."""
        loaded = load_models(cfg)
        backend, recogniser = loaded.backend, None
        if max_batch is not None:
            try:
                backend = BatchingBackend(backend, max_batch, max_wait_ms, timeout_s)
                if cfg.asr.enabled:
                    recogniser = BatchingRecogniser(loaded.extractors.asr, max_batch, max_wait_ms, timeout_s)
            except BaseException:
                backend.close()
                loaded.extractors.close()
                raise
        return cls(loaded.extractors, loaded.fusion, backend, recogniser)

    def with_fusion(self, cfg: EngineConfig) -> SharedModels:
        """The same extractors with the fusion model and backend of ``cfg`` (e.g. a second model scored on
        the same clips). Close only its backend: the extractors stay this object's."""
        fm = load_fusion_model(cfg, self.extractors.describe(), self.extractors.dims)
        return SharedModels(self.extractors, fm, build_backend(fm, cfg), self.recogniser)

    def engine(self, cfg: EngineConfig, sources: Sequence[Source], **kw: Any) -> Engine:
        """A fresh engine for one clip or stream on these models."""
        return Engine(
            cfg,
            sources,
            extractors=self.extractors,
            fusion=self.fusion,
            backend=self.backend,
            recogniser=self.recogniser,
            announce_untrained=False,
            **kw,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.fusion.identity,
            "trained": bool(self.fusion.trained),
            "extractors": self.extractors.profile.name,
            "backend": getattr(self.backend, "inner", self.backend).name,
        }

    def health(self) -> dict[str, Any]:
        """Whether these models can serve now, for a server's ``/healthz``: ``{"ok": bool, "reason": str,
        "stalled_s": float | None}``. Not ok while the batched fusion backend is stuck (a call running
        longer than its ``timeout_s``) or closed; ``reason`` says which ("" when ok). ``stalled_s``: how
        long the current batched fusion call has run (None when idle or not batched). Cheap, never
        blocks."""
        ok, reason = self.backend.health()
        stalled = self.backend.stalled_s() if isinstance(self.backend, BatchingBackend) else None
        return {"ok": ok, "reason": reason, "stalled_s": stalled}

    def close(self) -> None:
        if self.recogniser is not None:
            self.recogniser.close()
        self.backend.close()  # a BatchingBackend closes the backend it wraps
        self.extractors.close()
