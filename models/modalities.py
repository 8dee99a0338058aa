"""Modality names, availability masks and the seven availability conditions.

The availability mask is a 3-vector in the fixed order ``MODALITIES`` = (text, audio, video):
1 means the modality's features may be used, 0 means it is missing and must be reconstructed.
The paper calls speech "s"; here it is "audio" ("a") throughout.
"""

from __future__ import annotations

MODALITIES: tuple[str, str, str] = ("text", "audio", "video")
SHORT: dict[str, str] = {"text": "t", "audio": "a", "video": "v"}
# The inputs of every exported fusion graph, in this order: each modality's frames and their bool mask,
# then the availability mask [B, 3].
INPUT_NAMES: tuple[str, ...] = (*(n for m in MODALITIES for n in (m, f"{m}_mask")), "avail")

# The six missing conditions of the paper (by available set) plus full, in the paper's table order.
# Each value is the availability mask in MODALITIES order.
CONDITIONS: dict[str, tuple[int, int, int]] = {
    "t": (1, 0, 0),
    "a": (0, 1, 0),
    "v": (0, 0, 1),
    "tv": (1, 0, 1),
    "av": (0, 1, 1),
    "ta": (1, 1, 0),
    "tav": (1, 1, 1),
}
MISSING_CONDITIONS: tuple[str, ...] = ("t", "a", "v", "tv", "av", "ta")


def condition_name(mask: tuple[int, int, int] | list[int]) -> str:
    """Name of an availability mask, e.g. (1, 0, 1) -> "tv". Raises on the empty mask."""
    bits = tuple(int(bool(b)) for b in mask)
    if len(bits) != 3:
        raise ValueError(f"availability mask must have 3 entries (text, audio, video), got {mask!r}")
    name = "".join(SHORT[m] for m, b in zip(MODALITIES, bits, strict=True) if b)
    if not name:
        raise ValueError("availability mask (0, 0, 0) has no modality; nothing can be fused")
    return name
