"""Build now what a first run would otherwise build: ``python -m engine.prepare``

    python -m engine.prepare [--model NAME | --checkpoint PATH] [--config YAML] [--set KEY=VALUE ...]

The fusion backend's cache files for the model and backend of the config, the same ones run_live.py,
engine.serve and engine.evaluate would build on their first run: the exported ONNX graph (onnxruntime,
about 2 s on 2 cores), or the TensorRT engine (``--set backend.name=tensorrt``, minutes). ``make setup``
runs it for the shipped model, so that the first ``make demo`` starts as fast as the second. A cache
that is already there is reused. Prints one JSON line: the model, the backend and the seconds taken.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence

from engine.config import build_engine_config


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m engine.prepare", description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="fusion model family (its shipped checkpoint), as in run_live.py")
    ap.add_argument("--checkpoint", metavar="PATH", help="trained fusion checkpoint (.safetensors)")
    ap.add_argument("--config", metavar="YAML", help="engine config")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    args = parse_args(argv)
    from engine.backends import BackendError, preflight
    from engine.core.loading import build_backend, load_fusion

    t0 = time.perf_counter()
    try:
        cfg = build_engine_config(args.config, args.set, checkpoint=args.checkpoint, model=args.model)
        preflight(cfg.backend.name, cfg.backend.device)
        fusion = load_fusion(cfg)  # checked against the extractor profile; no extractor loads
        backend = build_backend(fusion, cfg)
    except (ValueError, FileNotFoundError, BackendError) as e:
        print(f"python -m engine.prepare: error: {e}", file=sys.stderr)
        return 2
    try:
        print(
            json.dumps(
                {
                    "model": fusion.identity,
                    "backend": backend.describe(),
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
        )
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
