"""A trained checkpoint evaluated on its own data under every availability condition, with plots.

    python -m training.evaluate --help

The command only; its code is ``training.evaluation.checkpoint_eval``.
"""

from training.evaluation.checkpoint_eval import main

if __name__ == "__main__":
    raise SystemExit(main())
