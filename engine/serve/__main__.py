"""python -m engine.serve: the streaming service on 127.0.0.1 unless --host says otherwise.

    python -m engine.serve                                  # 127.0.0.1:8765, configs/serve/default.yaml
    python -m engine.serve --port 9000 --max-streams 4 --token "$TOKEN"
    python -m engine.serve --engine-set window.hop_s=2 --set send_queue=128

The protocol is in docs/serve.md; clients: engine.client and ``run_live.py --server ws://...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m engine.serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--config", metavar="YAML", help="serve config (configs/serve/default.yaml if absent)")
    ap.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, help="port (default 8765; 0 picks a free one and prints it)")
    ap.add_argument("--token", help="bearer token clients must send (default: $EMOTION_SERVE_TOKEN, if set)")
    ap.add_argument("--max-streams", type=int, help="streams admitted at once")
    ap.add_argument("--engine-config", metavar="YAML", help="engine config for every stream")
    ap.add_argument("--checkpoint", metavar="PATH", help="fusion checkpoint (default: the shipped model)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="serve config override")
    ap.add_argument(
        "--engine-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="engine config override for every stream, e.g. window.hop_s=2",
    )
    ap.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return ap.parse_args(argv)


def build_config(args: argparse.Namespace):  # noqa: ANN201 - ServeConfig
    from engine.config import engine_shortcuts
    from engine.serve.config import TOKEN_ENV, load_serve_config

    items = list(args.set)
    for key, v in (
        ("host", args.host),
        ("port", args.port),
        ("max_streams", args.max_streams),
        ("engine_config", args.engine_config),
    ):
        if v is not None:
            items.append(f"{key}={v}")
    cfg = load_serve_config(args.config, items)
    cfg.engine_overrides = [
        *cfg.engine_overrides,
        *args.engine_set,
        *engine_shortcuts(checkpoint=args.checkpoint),
    ]
    token = args.token or os.environ.get(TOKEN_ENV) or None
    return cfg if token is None else dataclasses.replace(cfg, token=token)  # replace() validates it


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = build_config(args)
        engine_cfg = cfg.build_engine_config()  # bad keys, a missing checkpoint: before models load
    except (ValueError, FileNotFoundError) as e:
        print(f"engine.serve: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    import uvicorn

    from engine.serve.app import create_app

    app = create_app(cfg, engine_cfg)
    config = uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port,
        log_level=args.log_level,
        ws_max_size=max(16 << 20, 2 * cfg.max_message_bytes),  # our own limit answers first, with a reason
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("engine.serve").warning(
            "listening on %s: reachable from other machines%s",
            cfg.host,
            "" if cfg.token else " WITHOUT a token",
        )
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
