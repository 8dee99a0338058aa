"""ServeConfig: typed, validated settings of the network service (YAML in configs/serve/)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from engine.config import REPO_ROOT, EngineConfig, build_engine_config, resolve_path
from models.config_io import load_config, load_yaml

DEFAULT_SERVE_CONFIG = REPO_ROOT / "configs" / "serve" / "default.yaml"
TOKEN_ENV = "EMOTION_SERVE_TOKEN"  # the bearer token (or --token-file); never from a config file
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 8765
    # Admission: at most max_streams at once (set from benchmarks/serve_load.py on 2 CPU cores, see
    # docs/serve.md), and no new stream while the measured load is over budget.
    max_streams: int = 2
    e2e_budget_ms: float = 1000.0  # refuse new streams while the recent e2e p95 exceeds this
    max_cpu: float = 0.95  # ... or while this process used more than this fraction of all cores
    # ... or while one more stream, at the share of the cores each running stream was measured to take,
    # would pass max_cpu (engine/serve/admission.py)
    forecast_cpu: bool = True
    load_window_s: float = 10.0  # how far back the measured load looks
    send_queue: int = 64  # events waiting for a slow client; beyond, the oldest is dropped and counted
    max_message_bytes: int = 4 * 1024 * 1024  # one binary message (an audio chunk or an image)
    max_image_pixels: int = 4096 * 2160
    max_text_bytes: int = 4096  # one text message (start, end, ping)
    max_chunk_s: float = 5.0  # longest audio chunk in one message
    # Media time may run ahead of the wall clock (since the stream's first media message) by at most
    # max_lead_s: beyond, the server stops reading the socket until the clock catches up (backpressure).
    # A message that would put it more than max_gap_s ahead ends the stream (1007).
    max_lead_s: float = 2.0
    max_gap_s: float = 10.0
    max_messages_per_s: float = 200.0  # per stream, over a burst of 2 s; beyond: backpressure
    max_pings_per_s: float = 2.0  # per stream, over a burst of 10 pings; beyond: 1008
    max_fps: float = 30.0  # video frames closer in media time than 1/max_fps are dropped undecoded
    start_timeout_s: float = 10.0  # the start message must come this soon after connecting
    idle_timeout_s: float = 30.0  # a stream with no message for this long is ended
    max_stream_s: float = 4 * 3600.0  # a stream this long is ended (final event, summary, 1000)
    end_timeout_s: float = 30.0  # after "end", the client must have read the rest within this
    max_pending: int = 8  # sockets connected but not started (no start message yet); beyond: 1013
    max_connections: int = 64  # all connections (HTTP and WebSocket) uvicorn takes at once; beyond: 503
    drain_s: float = 30.0  # on SIGTERM: live streams may run this long before they are closed (1001)
    backend_timeout_s: float = 30.0  # a fusion backend call longer than this fails (and /healthz: 503)
    allowed_origins: list[str] = field(default_factory=list)  # browser origins besides the server's own
    engine_config: str | None = None  # engine YAML (configs/engine/default.yaml when absent)
    engine_overrides: list[str] = field(default_factory=list)  # key=value on top of engine_config
    fusion_max_batch: int = 16  # windows of different streams fused in one backend call
    fusion_max_wait_ms: float = 2.0
    malloc_trim_s: float = 60.0  # return freed C heap to the OS this often (engine/core/memory.py); 0: never
    token: str | None = field(default=None, repr=False)  # from TOKEN_ENV or --token-file, never YAML

    def __post_init__(self) -> None:  # noqa: C901 - one bound checked per setting
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"serve.{f.name} must be a finite number, got {v}")
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
        if self.max_text_bytes < 256 or self.max_messages_per_s < 1 or self.max_pings_per_s <= 0:
            raise ValueError("serve.max_text_bytes >= 256, max_messages_per_s >= 1, max_pings_per_s > 0")
        if self.max_lead_s < 0.5 or self.max_gap_s < self.max_lead_s + self.max_chunk_s:
            raise ValueError(
                "serve.max_lead_s must be >= 0.5 s and max_gap_s >= max_lead_s + max_chunk_s (a full "
                f"chunk sent at the lead limit is not a jump), got {self.max_lead_s}, {self.max_gap_s}"
            )
        if not 1 <= self.max_fps <= 240:
            raise ValueError(f"serve.max_fps must be in [1, 240], got {self.max_fps}")
        if self.max_stream_s < 1 or self.end_timeout_s <= 0 or self.drain_s < 0:
            raise ValueError("serve.max_stream_s >= 1, end_timeout_s > 0 and drain_s >= 0")
        if self.backend_timeout_s <= 0:
            raise ValueError(f"serve.backend_timeout_s must be > 0, got {self.backend_timeout_s}")
        if self.max_pending < 1 or self.max_connections < self.max_streams + self.max_pending + 2:
            raise ValueError(
                "serve.max_pending must be >= 1 and max_connections >= max_streams + max_pending + 2 "
                "(room for the health checks)"
            )
        for o in self.allowed_origins:
            if o != "*" and not o.startswith(("http://", "https://")):
                raise ValueError(f"serve.allowed_origins: {o!r} is not '*' or an http(s)://host[:port]")
        if self.token is not None and len(self.token) < 8:
            raise ValueError("serve token must be at least 8 characters")

    def check_exposure(self) -> None:
        """A server reachable from other machines needs a token (checked once the token is set)."""
        if self.host not in LOOPBACK and self.token is None:
            raise ValueError(
                f"serve.host {self.host} is reachable from other machines: set a token "
                f"({TOKEN_ENV} or --token-file)"
            )

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
    """The serve YAML plus ``key=value`` overrides. The token is refused in both: a file or a command
    line is readable by others (``ps``); it comes from TOKEN_ENV or a token file only."""
    if path is None and DEFAULT_SERVE_CONFIG.exists():
        path = DEFAULT_SERVE_CONFIG
    path = resolve_path(path) if path else None
    data = load_yaml(path) if path is not None and Path(path).is_file() else {}
    if "token" in (data or {}) or any(o.split("=", 1)[0].strip() == "token" for o in overrides):
        raise ValueError(f"serve.token is not read from a file or --set: use {TOKEN_ENV} or --token-file")
    return load_config(ServeConfig, path, overrides)


def read_token_file(path: str | Path) -> str:
    """The token in ``path`` (first line, stripped); one clear line when it cannot be read."""
    p = Path(path)
    try:
        token = p.read_text(encoding="utf-8").strip().splitlines()
    except OSError as e:
        raise ValueError(f"cannot read the token file {p}: {e.strerror or e}") from None
    if not token or not token[0].strip():
        raise ValueError(f"the token file {p} is empty")
    return token[0].strip()
