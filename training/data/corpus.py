"""Corpus listings: which utterances a corpus holds, their labels, speakers, folds and media files.

``list_corpus(kind, root)`` returns a list of ``Utterance`` for

* ``"iemocap"``: the official IEMOCAP release (``Session{1..5}/dialog/EmoEvaluation/*.txt`` for labels,
  ``sentences/wav/<dialog>/<utt>.wav`` for audio, ``dialog/transcriptions/<dialog>.txt`` for text,
  ``dialog/avi/DivX/<dialog>.avi`` for the dialogue video; an utterance's video is the span
  [start, end] of its dialogue video). 4 classes with excited merged into happy: 5,531 utterances in
  the full release. Group = session ("Session1".."Session5"), i.e. the leave-one-session-out folds.
* ``"msp-improv"``: the official MSP-IMPROV release (``Evalution.txt``, also accepted as
  ``Evaluation.txt``, for the consensus labels; ``Audio/session<k>/<S..>/<R|S|T|P>/*.wav`` and
  ``Video/session<k>/...*.avi``, or the flattened ``session<k>/...`` layout, found by file name).
  4 classes (A, H, N, S); O (other) and X (no agreement) are dropped. Group = session
  ("session1".."session6"), the 6 folds.
* ``"files"``: a folder of video and/or audio files (searched recursively, matched by file stem) with
  an optional ``labels.csv`` (``name,label`` plus optional ``speaker`` and ``group`` columns) and an
  optional ``transcripts.csv`` (``name,transcript``).
* ``"ravdess"``, ``"emodb"``, ``"meld"``, ``"fer2013"``, ``"cremad"``: the public corpora RAVDESS (speech,
  and the audio-visual release), EmoDB (German speech), MELD (the official CSVs, text, plus MELD.Raw clips
  when present), FER2013 (face images: the Kaggle csv or a four-class npz) and CREMA-D (audio-visual
  clips). Ids and speakers carry the corpus name (``"meld:train_dia0_utt0"``, ``"ravdess:01"``) and
  ``split`` holds the official split where the corpus has one.

Every loader lives in ``training.data.corpora`` (one module each, imported on first use). Labels are
normalised to the short class names (ang, hap, neu, sad, ...); see ``normalise_label``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.labels import FOUR_CLASSES, LABEL_ALIASES, normalise_label  # noqa: F401 - re-exported

VIDEO_EXTENSIONS: tuple[str, ...] = (".avi", ".mp4", ".flv", ".mkv", ".mov", ".webm")
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".mp3", ".ogg", ".m4a")

IEMOCAP_SESSIONS: tuple[str, ...] = tuple(f"Session{i}" for i in range(1, 6))
MSP_IMPROV_SESSIONS: tuple[str, ...] = tuple(f"session{i}" for i in range(1, 7))


@dataclass
class Utterance:
    """One labelled (or unlabelled) utterance and where its media lives.

    ``start``/``end`` are seconds within ``video_path`` when that file holds a whole dialogue (IEMOCAP's
    dialog/avi); None means the file is the utterance. Ids and speakers are unique across corpora when
    several corpora share one feature store (the newer loaders prefix them with the corpus name).
    ``extra`` carries corpus-specific fields (e.g. MSP-IMPROV's recording scenario) as strings.
    """

    id: str
    label: str | None
    speaker: str
    group: str
    audio_path: Path | None
    video_path: Path | None
    transcript: str | None
    start: float | None = None
    end: float | None = None
    extra: dict[str, str] = field(default_factory=dict)
    corpus: str = ""  # the corpus kind that listed it ("ravdess", "meld", ...); "" for older listings
    split: str | None = None  # official split ("train" | "val" | "test") where the corpus defines one
    # A still face image instead of a video (FER2013): returns uint8 gray [H, W] or RGB [H, W, 3].
    image: Callable[[], np.ndarray] | None = None


def _lazy_loader(module: str, function: str) -> Callable[[Path], list[Utterance]]:
    """training.data.corpora.<module>.<function>, imported on first call: those modules import this one
    (for Utterance), so importing them here at load time would be an import cycle."""

    def load(root: Path) -> list[Utterance]:
        return getattr(importlib.import_module(f"training.data.corpora.{module}"), function)(root)

    load.__name__ = load.__qualname__ = function
    return load


CORPORA: dict[str, Callable[[Path], list[Utterance]]] = {
    "iemocap": _lazy_loader("iemocap", "list_iemocap"),
    "msp-improv": _lazy_loader("msp_improv", "list_msp_improv"),
    "files": _lazy_loader("files", "list_files"),
    "ravdess": _lazy_loader("ravdess", "list_ravdess"),
    "emodb": _lazy_loader("emodb", "list_emodb"),
    "meld": _lazy_loader("meld", "list_meld"),
    "fer2013": _lazy_loader("fer2013", "list_fer2013"),
    "cremad": _lazy_loader("cremad", "list_cremad"),
}


def list_corpus(kind: str, root: str | Path) -> list[Utterance]:
    """List a corpus by kind ("iemocap", "msp-improv", "files"); errors name the expected layout."""
    key = kind.lower().replace("_", "-")
    if key not in CORPORA:
        raise ValueError(f"unknown corpus kind {kind!r}; known: {sorted(CORPORA)}")
    return CORPORA[key](Path(root))


def class_counts(utterances: list[Utterance]) -> dict[str, int]:
    """Label -> count (unlabelled utterances under None are skipped)."""
    counts: dict[str, int] = {}
    for u in utterances:
        if u.label is not None:
            counts[u.label] = counts.get(u.label, 0) + 1
    return dict(sorted(counts.items()))
