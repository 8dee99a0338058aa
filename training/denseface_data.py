"""FER2013's four classes as the engine sees a face: 64x64 gray crops made by the engine's own face path.

    python -m training.denseface_data --help

The command only; its code is ``training.denseface.data``.
"""

from training.denseface.data import main

if __name__ == "__main__":
    raise SystemExit(main())
