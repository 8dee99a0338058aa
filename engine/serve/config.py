"""ServeConfig: typed, validated settings of the network service (YAML in configs/serve/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.config import REPO_ROOT, EngineConfig, build_engine_config, resolve_path
from models.config_io import load_config

DEFAULT_SERVE_CONFIG = REPO_ROOT / "configs" / "serve" / "default.yaml"
TOKEN_ENV = "EMOTION_SERVE_TOKEN"  # the bearer token, when --token is not given


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 8765
    # Admission: at most max_streams at once (set from benchmarks/serve_load.py on 2 CPU cores, see
    # docs/serve.md), and no new stream while the measured load is over budget.
    max_streams: int = 2
    e2e_budget_ms: float = 1000.0  # refuse new streams while the recent e2e p95 exceeds this
    max_cpu: float = 0.95  # ... or while this process used more than this fraction of all cores
    load_window_s: float = 10.0  # how far back the measured load looks
    send_queue: int = 64  # events waiting for a slow client; beyond, the oldest is dropped and counted
    max_message_bytes: int = 4 * 1024 * 1024  # one binary message (an audio chunk or an image)
    max_image_pixels: int = 4096 * 2160
    max_chunk_s: float = 5.0  # longest audio chunk in one message
    start_timeout_s: float = 10.0  # the start message must come this soon after connecting
    idle_timeout_s: float = 30.0  # a stream with no message for this long is ended
    engine_config: str | None = None  # engine YAML (configs/engine/default.yaml when absent)
    engine_overrides: list[str] = field(default_factory=list)  # key=value on top of engine_config
    fusion_max_batch: int = 16  # windows of different streams fused in one backend call
    fusion_max_wait_ms: float = 2.0
    malloc_trim_s: float = 60.0  # return freed C heap to the OS this often (engine/memory.py); 0: never
    token: str | None = None  # bearer token; from the command line or TOKEN_ENV, never from a file

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("serve.host must not be empty")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"serve.port must be in [0, 65535], got {self.port}")
        if self.max_streams < 1 or self.send_queue < 1 or self.fusion_max_batch < 1:
            raise ValueError("serve.max_streams, send_queue and fusion_max_batch must be >= 1")
        if self.e2e_budget_ms <= 0 or self.load_window_s <= 0 or not 0 < self.max_cpu <= 1:
            raise ValueError("serve.e2e_budget_ms and load_window_s must be > 0 and max_cpu in (0, 1]")
        if self.max_message_bytes < 1024 or self.max_image_pixels < 1 or self.max_chunk_s <= 0:
            raise ValueError("serve.max_message_bytes >= 1024, max_image_pixels >= 1, max_chunk_s > 0")
        if self.malloc_trim_s < 0:
            raise ValueError(f"serve.malloc_trim_s must be >= 0, got {self.malloc_trim_s}")
        if self.start_timeout_s <= 0 or self.idle_timeout_s <= 0 or self.fusion_max_wait_ms < 0:
            raise ValueError("serve timeouts must be > 0 and fusion_max_wait_ms >= 0")
        if self.token is not None and len(self.token) < 8:
            raise ValueError("serve token must be at least 8 characters")

    def engine_config_path(self) -> Path | None:
        return resolve_path(self.engine_config) if self.engine_config else None

    def build_engine_config(self) -> EngineConfig:
        """The engine config every stream starts from; a missing checkpoint fails here, before loading."""
        from engine.backends import preflight
        from engine.stages.fusion import check_checkpoint

        cfg = build_engine_config(self.engine_config, self.engine_overrides)
        check_checkpoint(cfg)
        preflight(cfg.backend.name, cfg.backend.device)  # a BackendError is a ValueError
        return cfg


def load_serve_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> ServeConfig:
    if path is None and DEFAULT_SERVE_CONFIG.exists():
        path = DEFAULT_SERVE_CONFIG
    return load_config(ServeConfig, resolve_path(path) if path else None, overrides)
