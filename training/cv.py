"""Leave-one-group-out cross-validation: every fold trained and tested, then mean ± std.

    python -m training.cv --help

The command only; its code is ``training.evaluation.cv``.
"""

from training.evaluation.cv import main

if __name__ == "__main__":
    raise SystemExit(main())
