"""Train a fusion model with per-sample missing-modality conditions.

    python -m training.train --help

The command only; its code is ``training.loop.train``.
"""

from training.loop.train import main

if __name__ == "__main__":
    raise SystemExit(main())
