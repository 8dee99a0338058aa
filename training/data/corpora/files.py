"""A plain folder of video and/or audio files, matched by stem, with optional ``labels.csv`` and
``transcripts.csv``: a user's own clips."""

from __future__ import annotations

import csv
from pathlib import Path

from training.data.corpora import index_media, read_name_csv
from training.data.corpus import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS, Utterance, normalise_label


def list_files(root: Path) -> list[Utterance]:
    """Every video/audio file under root, matched by stem; labels from an optional labels.csv.

    With only a video file, ``audio_path`` is the same video file (its audio track); with only an audio
    file, ``video_path`` is None. Speaker and group come from labels.csv columns when present, else the
    file's parent folder name.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    videos = index_media(root, VIDEO_EXTENSIONS)
    audios = index_media(root, AUDIO_EXTENSIONS)
    labels = read_name_csv(root / "labels.csv", "label")
    transcripts = read_name_csv(root / "transcripts.csv", "transcript")
    speakers = _optional_column(root / "labels.csv", "speaker")
    groups = _optional_column(root / "labels.csv", "group")
    out: list[Utterance] = []
    for stem in sorted(set(videos) | set(audios)):
        video = videos.get(stem)
        audio = audios.get(stem, video)
        folder = (video or audio).parent.name  # type: ignore[union-attr]
        speaker = speakers.get(stem) or folder
        out.append(
            Utterance(
                id=stem,
                label=normalise_label(labels.get(stem)),
                speaker=speaker,
                group=groups.get(stem) or speaker,
                audio_path=audio,
                video_path=video,
                transcript=transcripts.get(stem),
                corpus="files",
            )
        )
    return out


def _optional_column(path: Path, column: str) -> dict[str, str]:
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or column not in reader.fieldnames:
            return {}
        return {r["name"].strip(): r[column].strip() for r in reader if r.get("name") and r.get(column)}
