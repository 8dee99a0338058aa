"""Offline feature extraction: corpus -> feature store.

    python -m training.extract --help

The command only; its code is ``training.data.extract``.
"""

from training.data.extract import main

if __name__ == "__main__":
    raise SystemExit(main())
