"""Latency profiler for the fusion backends and for the whole engine.

    python -m engine.profile --help

The command only; its code is ``engine.tools.latency``.
"""

from engine.tools.latency import main

if __name__ == "__main__":
    raise SystemExit(main())
