"""The same service on Ray Serve: N replicas of ``create_app`` behind Ray Serve's ingress, autoscaled on
active streams, with the same protocol (``pip install -e ".[serve]"``).

    serve run configs/serve/ray_serve.yaml                     # local Ray, or the cluster of RAY_ADDRESS
    serve run engine.serve.ray_app:build max_replicas=4        # the same from arguments

Each replica is one server process: it loads the models once and admits up to ``max_streams`` streams
(the single-process measurement, docs/serve.md). A WebSocket is one ongoing request for its whole
life, so Ray Serve's ``target_ongoing_requests`` autoscaling is autoscaling on active streams. A
replica accepts one request more than its capacity so that an excess stream is refused at once with
the reason (close code 1013) instead of waiting unseen in a queue while replicas start.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ray import serve
from ray.serve import Application

from engine.serve.config import TOKEN_ENV, ServeConfig, load_serve_config


@serve.deployment(name="EmotionService")
@serve.ingress()
class EmotionService:
    def __init__(self, config: str | None = None, overrides: list[str] | None = None) -> None:
        cfg = load_serve_config(config, list(overrides or []))
        token = os.environ.get(TOKEN_ENV)  # set through the runtime_env's env_vars, never in a file
        self.cfg: ServeConfig = dataclasses.replace(cfg, token=token) if token else cfg

    def __serve_build_asgi_app__(self) -> Any:
        from engine.serve.app import create_app

        return create_app(self.cfg)  # models load in the app's lifespan, on the replica


def build(args: dict[str, Any]) -> Application:
    """Application builder: ``config`` (serve YAML), ``overrides`` (key=value list), ``min_replicas`` (1),
    ``max_replicas`` (4), ``num_cpus`` per replica (2)."""
    args = dict(args)
    config, overrides = args.pop("config", None), list(args.pop("overrides", []))
    min_r, max_r = int(args.pop("min_replicas", 1)), int(args.pop("max_replicas", 4))
    num_cpus = float(args.pop("num_cpus", 2))
    if args:
        raise ValueError(
            f"unknown argument(s) {sorted(args)}; allowed: config, overrides, min_replicas, "
            "max_replicas, num_cpus"
        )
    if not 1 <= min_r <= max_r:
        raise ValueError(f"need 1 <= min_replicas <= max_replicas, got {min_r}, {max_r}")
    cap = load_serve_config(config, overrides).max_streams  # validated here, before any replica starts
    return EmotionService.options(
        max_ongoing_requests=cap + 1,
        autoscaling_config={
            "min_replicas": min_r,
            "max_replicas": max_r,
            "target_ongoing_requests": max(1.0, 0.75 * cap),
            "upscale_delay_s": 10.0,
            "downscale_delay_s": 120.0,
        },
        ray_actor_options={"num_cpus": num_cpus},
    ).bind(config, overrides)
