"""Evaluate the live engine on a folder of labelled clips.

    python -m engine.evaluate --help

The command only; its code is ``engine.tools.clip_evaluation``.
"""

from engine.tools.clip_evaluation import main

if __name__ == "__main__":
    raise SystemExit(main())
