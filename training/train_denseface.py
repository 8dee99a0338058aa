"""Train DenseFace (DenseNet-BC-100, k=12) and write the safetensors weights the face path loads.

    python -m training.train_denseface --help

The command only; its code is ``training.denseface.train``.
"""

from training.denseface.train import main

if __name__ == "__main__":
    raise SystemExit(main())
