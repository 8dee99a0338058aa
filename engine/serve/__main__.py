"""python -m engine.serve: the streaming service on 127.0.0.1 unless --host says otherwise.

    python -m engine.serve                                  # 127.0.0.1:8765, configs/serve/default.yaml
    EMOTION_SERVE_TOKEN=... python -m engine.serve --port 9000 --max-streams 4
    python -m engine.serve --host 0.0.0.0 --token-file token.txt --ssl-certfile c.pem --ssl-keyfile k.pem
    python -m engine.serve --engine-set window.hop_s=2 --set send_queue=128

SIGTERM drains: no new streams, live ones run for up to drain_s, then end with their final event.

The protocol is in docs/serve.md; clients: engine.tools.client and ``run_live.py --server ws://...``.
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
    ap.add_argument(
        "--token",
        help="bearer token clients must send; visible to other users in ps: prefer $EMOTION_SERVE_TOKEN or "
        "--token-file",
    )
    ap.add_argument("--token-file", metavar="PATH", help="file whose first line is the bearer token")
    ap.add_argument("--ssl-certfile", metavar="PEM", help="serve TLS (wss://, https://) with this cert")
    ap.add_argument("--ssl-keyfile", metavar="PEM", help="the certificate's private key")
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
    from engine.serve.config import TOKEN_ENV, load_serve_config, read_token_file

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
    if args.token_file:
        token = read_token_file(args.token_file)
    else:
        token = args.token or os.environ.get(TOKEN_ENV) or None
    cfg = cfg if token is None else dataclasses.replace(cfg, token=token)  # replace() validates it
    cfg.check_exposure()
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise ValueError("--ssl-certfile and --ssl-keyfile go together")
    for p in (args.ssl_certfile, args.ssl_keyfile):
        if p and not os.path.isfile(p):
            raise FileNotFoundError(f"TLS file not found: {p}")
    return cfg


def main(argv: list[str] | None = None) -> int:
    from engine.serve.config import LOOPBACK, TOKEN_ENV

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
    from engine.serve.drain import DrainingServer

    if args.token:
        logging.getLogger("engine.serve").warning(
            "--token is visible to other users of this machine (ps): prefer %s or --token-file", TOKEN_ENV
        )
    app = create_app(cfg, engine_cfg)
    config = uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port,
        log_level=args.log_level,
        # Our own limits answer first, with a reason; uvicorn's stop what is far beyond them.
        ws_max_size=cfg.max_message_bytes + 65536,
        ws_max_queue=8,  # messages buffered per socket before TCP holds the client back
        ws_per_message_deflate=False,  # no decompression work (or bombs) on the server
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        limit_concurrency=cfg.max_connections,  # beyond: HTTP 503
        timeout_graceful_shutdown=10,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        lifespan="on",
    )
    server = DrainingServer(config, app.state.service, cfg.drain_s)
    if cfg.host not in LOOPBACK:
        logging.getLogger("engine.serve").warning(
            "listening on %s: reachable from other machines%s",
            cfg.host,
            "" if args.ssl_certfile else " over plain ws:// (no TLS): the token crosses the network in clear",
        )
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
