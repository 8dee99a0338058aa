"""Emotion class names: the four classes the product reads, and corpus label spellings mapped onto them.

Shared by offline training (corpus loaders) and the engine's evaluation of labelled clips, so both read
a label file the same way.
"""

from __future__ import annotations

FOUR_CLASSES: tuple[str, ...] = ("ang", "hap", "neu", "sad")

# Long or corpus-specific label spellings -> the short class names used by every model config.
LABEL_ALIASES: dict[str, str] = {
    "anger": "ang",
    "angry": "ang",
    "a": "ang",
    "happiness": "hap",
    "happy": "hap",
    "joy": "hap",
    "h": "hap",
    "excited": "hap",
    "excitement": "hap",
    "exc": "hap",  # IEMOCAP convention: excited merged into happy
    "neutral": "neu",
    "n": "neu",
    "sadness": "sad",
    "s": "sad",
    "frustration": "fru",
    "frustrated": "fru",
    "surprise": "sur",
    "surprised": "sur",
    "fear": "fea",
    "fearful": "fea",
    "disgust": "dis",
    "disgusted": "dis",
    "other": "oth",
    "contempt": "con",
}


def normalise_label(label: str | None) -> str | None:
    """'Excited' -> 'hap', 'anger' -> 'ang', 'neu' -> 'neu'; unknown labels are lower-cased as they are."""
    if label is None:
        return None
    key = label.strip().lower()
    if not key:
        return None
    return LABEL_ALIASES.get(key, key)
