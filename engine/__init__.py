"""Real-time multimodal emotion recognition engine (CM-ARR fusion with missing-modality reconstruction).

Embedding API: ``Engine``, ``EngineConfig``, ``EmotionEvent`` and the sources/sinks packages.
"""

from engine.config import EngineConfig, load_engine_config
from engine.core.loading import load_extractors
from engine.engine import UNTRAINED_BANNER, Engine
from engine.frames import EmotionEvent, ExpertReading, FaceInfo, ModalityHealth, Word

__all__ = [
    "UNTRAINED_BANNER",
    "EmotionEvent",
    "Engine",
    "EngineConfig",
    "ExpertReading",
    "FaceInfo",
    "ModalityHealth",
    "Word",
    "load_engine_config",
    "load_extractors",
]
