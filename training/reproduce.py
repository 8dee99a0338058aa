"""Reproduce the shipped model from the labelled corpora: one command, seeded, on 2 CPU cores.

    python -m training.reproduce --help

The command only; its code is ``training.recipe.reproduce``.
"""

from training.recipe.reproduce import main

if __name__ == "__main__":
    raise SystemExit(main())
