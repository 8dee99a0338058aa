"""A folder of labelled clips for ``python -m engine.evaluate``: media files matched by stem with
``labels.csv`` (``name,label``; labels normalised, so "angry" and "ANG" both read "ang")."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from models.labels import normalise_label

VIDEO_EXTENSIONS: tuple[str, ...] = (".flv", ".mp4", ".avi", ".mkv", ".mov", ".webm")
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".mp3", ".ogg", ".m4a")


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


@dataclass
class Clip:
    name: str  # file stem
    label: str  # normalised
    path: Path
    audio_only: bool


@dataclass
class Listing:
    clips: list[Clip]
    skipped: list[str]  # media stems without a label
    unmatched_labels: int  # labels.csv names with no media file


def index_media(root: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """stem -> path of every media file under ``root`` with one of ``extensions`` (first in sorted order)."""
    found: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in extensions and not p.name.startswith(".") and p.is_file():
            found.setdefault(p.stem, p)
    return found


def read_labels(path: Path) -> dict[str, str]:
    """name -> normalised label from a ``name,label`` CSV; rows with an empty label are left out."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "name" not in columns or "label" not in columns:
            raise UsageError(f"{path} must have a header with the columns name,label (got {columns})")
        reader.fieldnames = columns
        out: dict[str, str] = {}
        for row in reader:
            name, label = (row.get("name") or "").strip(), normalise_label(row.get("label"))
            if name and label:
                out[name] = label
    return out


def list_clips(root: Path) -> Listing:
    if not root.is_dir():
        raise UsageError(f"--root {root} is not a folder")
    labels_csv = root / "labels.csv"
    if not labels_csv.is_file():
        raise UsageError(f"{root} has no labels.csv (columns name,label)")
    labels = read_labels(labels_csv)
    videos, audios = index_media(root, VIDEO_EXTENSIONS), index_media(root, AUDIO_EXTENSIONS)
    stems = sorted(set(videos) | set(audios))
    if not stems:
        raise UsageError(f"no media files under {root} ({' '.join(VIDEO_EXTENSIONS + AUDIO_EXTENSIONS)})")
    clips = [Clip(s, labels[s], videos.get(s) or audios[s], s not in videos) for s in stems if s in labels]
    skipped = [s for s in stems if s not in labels]
    return Listing(clips, skipped, len(set(labels) - set(stems)))
