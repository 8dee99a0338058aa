"""Loaders for public emotion corpora, one module per corpus, each reached through
``training.data.corpus.list_corpus(kind, root)``:

* ``ravdess``: RAVDESS acted speech (and the audio-visual release), 8 emotions including calm.
* ``emodb``: the Berlin Database of Emotional Speech (German), 7 emotions including boredom.
* ``meld``: MELD dialogue from Friends: the official CSVs (text), plus the clips when present.
* ``fer2013``: FER2013 48x48 gray faces (the Kaggle csv, or a four-class npz), still images.
* ``cremad``: CREMA-D audio-visual clips, 6 emotions.
* ``iemocap``, ``msp_improv``: the licensed IEMOCAP and MSP-IMPROV releases.
* ``files``: a user's own folder of clips.

Conventions shared by every loader here:

* ``id`` is ``"<corpus>:<official file stem or row id>"`` and ``speaker`` is ``"<corpus>:<speaker id>"``,
  so several corpora can share one feature store; ids never contain "/".
* ``label`` is a short class name (ang, hap, neu, sad, cal, bor, dis, fea, sur); ``extra["raw_label"]``
  keeps the corpus's own code. ``extra`` values are strings.
* Speech corpora leave ``transcript`` None (training runs the engine's own ASR, as in deployment) and keep
  the prompt text, where the corpus defines one, in ``extra["corpus_text"]``.
* Output is sorted by id. A root that does not match the layout raises ``FileNotFoundError`` naming the
  expected layout and where the corpus comes from.

This module holds only the small file helpers the loaders share; it imports none of them, so
``training.data.corpus`` can import each loader lazily without an import cycle.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path


def is_visible(path: Path) -> bool:
    """False for hidden files and macOS resource forks ("._x.wav"), which copies from a Mac carry."""
    return not path.name.startswith(".")


def walk_files(root: Path) -> list[Path]:
    """Every visible file under root, recursively, in sorted order (so that "first wins" is deterministic)."""
    return sorted(p for p in root.rglob("*") if is_visible(p) and p.is_file())


def index_by_stem(files: Iterable[Path], extensions: tuple[str, ...]) -> dict[str, Path]:
    """stem -> file for the files whose suffix is in ``extensions``.

    Where one stem has several files, the extension listed first wins (e.g. an original .wav over a
    converted .mp3), then the first path in the given order.
    """
    rank = {ext: i for i, ext in enumerate(extensions)}
    found: dict[str, Path] = {}
    for p in files:
        r = rank.get(p.suffix.lower())
        if r is None:
            continue
        old = found.get(p.stem)
        if old is None or r < rank[old.suffix.lower()]:
            found[p.stem] = p
    return found


def layout_error(root: Path, corpus: str, expected: str, source: str) -> FileNotFoundError:
    """The error for a root that is not the corpus: what was expected and where the corpus comes from."""
    return FileNotFoundError(f"{root} does not look like {corpus}: expected {expected}. {source}")


def index_media(root: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """stem -> path for every media file under root (the first in sorted order wins, whatever its
    extension)."""
    found: dict[str, Path] = {}
    for p in walk_files(root):
        if p.suffix.lower() in extensions:
            found.setdefault(p.stem, p)
    return found


def read_name_csv(path: Path, column: str) -> dict[str, str]:
    """name -> ``column`` from a csv with a header (empty when the file is absent)."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and ("name" not in rows[0] or column not in rows[0]):
        raise ValueError(f"{path}: expected a header with columns 'name' and '{column}', got {list(rows[0])}")
    return {r["name"].strip(): r[column] for r in rows if r.get("name")}
