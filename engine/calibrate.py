"""Record real fusion inputs for int8 calibration: ``python -m engine.calibrate --out calib.npz CLIPS...``.

    python -m engine.calibrate --help

The command only; its code is ``engine.tools.int8_windows``.
"""

from engine.tools.int8_windows import main

if __name__ == "__main__":
    raise SystemExit(main())
