"""Evaluation under every availability condition: WAR / UAR / F1 / per-class recall / confusion.

    python -m training.evaluate --help

The command only; its code is ``training.evaluation.conditions``.
"""

from training.evaluation.conditions import main

if __name__ == "__main__":
    raise SystemExit(main())
