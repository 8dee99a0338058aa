"""The speech expert's calibration on speakers it never heard, measured on enough of them.

    python -m training.speech_calibration --help

The command only; its code is ``training.evaluation.speech_calibration``.
"""

from training.evaluation.speech_calibration import main

if __name__ == "__main__":
    raise SystemExit(main())
