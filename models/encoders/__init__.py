"""Feature extractors shared by offline extraction (``training.data.extract``) and the live engine.

One module per job; heavy libraries (faster-whisper, transformers, mediapipe, OpenCV, PyAV) are imported
inside the functions and classes that need them, so importing this package stays cheap.

- ``audio``: decode any media file to 16 kHz mono float32 (PyAV + soxr), ``to_mono``, ``resample``.
- ``video``: RGB frames of a media file at a capped frame rate (PyAV).
- ``asr``: faster-whisper wrapper with word timestamps (offline tiny.en or any size).
- ``text``: transformers token features (MiniLM-L6 offline, BERT-base paper).
- ``speech``: log-mel filterbank (no weights) and wav2vec2-base frame features.
- ``face``: MediaPipe BlazeFace detection, face selection, crops, per-frame features + presence.
- ``mini_xception``: the FER2013 mini-Xception rebuilt in torch (bundled weights).
- ``denseface``: DenseNet-BC-100 for FER+ (the paper's 342-d face feature).
- ``profile``: ``ExtractorProfile`` (configs/extractors/*.yaml) and the ``Extractors`` bundle.
"""
