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
  clips). Their loaders live in ``training.data.corpora`` (one module each, imported on first use); ids
  and speakers carry the corpus name (``"meld:train_dia0_utt0"``, ``"ravdess:01"``) and ``split`` holds
  the official split where the corpus has one.

Labels are normalised to the short class names (ang, hap, neu, sad, ...); see ``normalise_label``.
"""

from __future__ import annotations

import csv
import importlib
import re
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


# --------------------------------------------------------------------------------------------------
# IEMOCAP
# --------------------------------------------------------------------------------------------------
# "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]"
_IEMOCAP_EVAL = re.compile(
    r"^\[(?P<start>\d+(?:\.\d+)?)\s*-\s*(?P<end>\d+(?:\.\d+)?)\]\s+(?P<id>Ses\d\d[FM]_\S+)\s+(?P<emo>\w+)\s+\["
)
# "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."
_IEMOCAP_TRANS = re.compile(r"^(?P<id>Ses\d\d[FM]_\S+)\s+\[[\d.]+-[\d.]+\]:\s?(?P<text>.*)$")
IEMOCAP_LABELS: dict[str, str] = {"ang": "ang", "hap": "hap", "exc": "hap", "neu": "neu", "sad": "sad"}


def _visible_files(folder: Path, pattern: str) -> list[Path]:
    """Sorted files matching pattern, skipping macOS resource forks ("._x.txt") and hidden files."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))


def _read_iemocap_transcripts(folder: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in _visible_files(folder, "*.txt"):
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _IEMOCAP_TRANS.match(line.strip())
            if m:
                out[m.group("id")] = m.group("text").strip()
    return out


def _iemocap_dialog_video(avi_dir: Path, dialog: str) -> Path | None:
    for cand in (avi_dir / "DivX" / f"{dialog}.avi", avi_dir / f"{dialog}.avi"):
        if cand.is_file():
            return cand
    return None


def list_iemocap(root: Path, classes: dict[str, str] | None = None) -> list[Utterance]:
    """IEMOCAP utterances whose categorical label maps to a class (default: 4 classes, exc -> hap).

    Speaker = session + the speaking actor's gender (the letter that starts the turn index, e.g.
    Ses01F_impro01_M003 is spoken by Ses01M). Missing media give None paths, never an error, so that a
    partial copy (e.g. without video) still lists; the extractor treats a None path as a missing modality.
    """
    root = Path(root)
    classes = IEMOCAP_LABELS if classes is None else classes
    sessions = [root / s for s in IEMOCAP_SESSIONS if (root / s).is_dir()]
    if not sessions:
        raise FileNotFoundError(
            f"{root} does not look like the IEMOCAP release: expected Session1..Session5 folders with "
            "dialog/EmoEvaluation/*.txt. IEMOCAP is licensed by USC SAIL (sail.usc.edu/iemocap)."
        )
    out: list[Utterance] = []
    for sess in sessions:
        eval_files = _visible_files(sess / "dialog" / "EmoEvaluation", "*.txt")
        transcripts = _read_iemocap_transcripts(sess / "dialog" / "transcriptions")
        for f in eval_files:
            dialog = f.stem
            video = _iemocap_dialog_video(sess / "dialog" / "avi", dialog)
            for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
                m = _IEMOCAP_EVAL.match(line.strip())
                if not m:
                    continue
                label = classes.get(m.group("emo").lower())
                if label is None:  # fru, sur, fea, dis, oth, xxx ... are not part of the task
                    continue
                utt = m.group("id")
                turn = utt.rsplit("_", 1)[-1]  # "F000" / "M003"
                wav = sess / "sentences" / "wav" / dialog / f"{utt}.wav"
                out.append(
                    Utterance(
                        id=utt,
                        label=label,
                        speaker=f"{utt[:5]}{turn[0]}",
                        group=sess.name,
                        audio_path=wav if wav.is_file() else None,
                        video_path=video,
                        transcript=transcripts.get(utt),
                        start=float(m.group("start")),
                        end=float(m.group("end")),
                        extra={"dialog": dialog, "raw_label": m.group("emo")},
                    )
                )
    return out


# --------------------------------------------------------------------------------------------------
# MSP-IMPROV
# --------------------------------------------------------------------------------------------------
# "UTD-IMPROV-S01A-F01-P-FM01.avi; N; A:3.000000; V:3.000000; D:3.000000 ; N:3.000000;"
_MSP_EVAL = re.compile(r"^UTD-IMPROV-(?P<name>[A-Z0-9-]+)\.avi;\s*(?P<emo>[A-Z]);")
# Name after "MSP-IMPROV-": S01A-F01-P-FM01 = sentence 01, acted emotion A, speaker F01 (gender F,
# session 01), scenario P (R read, S improvised, T target, P natural interaction), dyad FM01.
_MSP_NAME = re.compile(
    r"^S(?P<sentence>\d\d)(?P<acted>[A-Z])-(?P<speaker>[FM](?P<session>\d\d))-"
    r"(?P<scenario>[A-Z])-(?P<dyad>[A-Z]+\d\d)"
)
MSP_IMPROV_LABELS: dict[str, str] = {"A": "ang", "H": "hap", "N": "neu", "S": "sad"}


def _index_media(root: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """stem -> path for every media file under root (first in sorted order wins)."""
    found: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in extensions and p.is_file() and not p.name.startswith("."):
            found.setdefault(p.stem, p)
    return found


def list_msp_improv(
    root: Path, classes: dict[str, str] | None = None, scenarios: tuple[str, ...] | None = None
) -> list[Utterance]:
    """MSP-IMPROV utterances with a consensus label in ``classes`` (default A/H/N/S).

    ``scenarios`` keeps only recordings of those scenario letters (e.g. ("S", "P") drops read and target
    sentences); None keeps all. Transcripts are not part of the release: ``transcript`` is filled from an
    optional ``transcripts.csv`` (name,transcript) at the root, else None (the extractor then runs ASR).
    """
    root = Path(root)
    classes = MSP_IMPROV_LABELS if classes is None else classes
    eval_file = next((root / n for n in ("Evalution.txt", "Evaluation.txt") if (root / n).is_file()), None)
    if eval_file is None:
        raise FileNotFoundError(
            f"{root} does not look like the MSP-IMPROV release: no Evalution.txt / Evaluation.txt. "
            "MSP-IMPROV is licensed by the MSP lab, UT Dallas "
            "(ecs.utdallas.edu/research/researchlabs/msp-lab)."
        )
    transcripts = _read_name_csv(root / "transcripts.csv", "transcript")
    audio = _index_media(root, (".wav",))
    video = _index_media(root, (".avi",))
    out: list[Utterance] = []
    seen: set[str] = set()
    for line in eval_file.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _MSP_EVAL.match(line.strip())
        if not m:
            continue  # rater lines ("Rater-1; Neutral; ...") and blank lines
        label = classes.get(m.group("emo"))
        name = m.group("name")
        parts = _MSP_NAME.match(name)
        if label is None or parts is None:
            continue
        if scenarios is not None and parts.group("scenario") not in scenarios:
            continue
        utt = f"MSP-IMPROV-{name}"
        if utt in seen:
            continue
        seen.add(utt)
        out.append(
            Utterance(
                id=utt,
                label=label,
                speaker=parts.group("speaker"),
                group=f"session{int(parts.group('session'))}",
                audio_path=audio.get(utt),
                video_path=video.get(utt),
                transcript=transcripts.get(utt),
                extra={
                    "scenario": parts.group("scenario"),
                    "acted": parts.group("acted"),
                    "sentence": parts.group("sentence"),
                    "raw_label": m.group("emo"),
                },
            )
        )
    return out


# --------------------------------------------------------------------------------------------------
# A plain folder of files
# --------------------------------------------------------------------------------------------------
def _read_name_csv(path: Path, column: str) -> dict[str, str]:
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and ("name" not in rows[0] or column not in rows[0]):
        raise ValueError(f"{path}: expected a header with columns 'name' and '{column}', got {list(rows[0])}")
    return {r["name"].strip(): r[column] for r in rows if r.get("name")}


def list_files(root: Path) -> list[Utterance]:
    """Every video/audio file under root, matched by stem; labels from an optional labels.csv.

    With only a video file, ``audio_path`` is the same video file (its audio track); with only an audio
    file, ``video_path`` is None. Speaker and group come from labels.csv columns when present, else the
    file's parent folder name.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    videos = _index_media(root, VIDEO_EXTENSIONS)
    audios = _index_media(root, AUDIO_EXTENSIONS)
    labels = _read_name_csv(root / "labels.csv", "label")
    transcripts = _read_name_csv(root / "transcripts.csv", "transcript")
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


def _lazy_loader(module: str, function: str) -> Callable[[Path], list[Utterance]]:
    """training.data.corpora.<module>.<function>, imported on first call: those modules import this one
    (for Utterance), so importing them here at load time would be an import cycle."""

    def load(root: Path) -> list[Utterance]:
        return getattr(importlib.import_module(f"training.data.corpora.{module}"), function)(root)

    load.__name__ = load.__qualname__ = function
    return load


CORPORA: dict[str, Callable[[Path], list[Utterance]]] = {
    "iemocap": list_iemocap,
    "msp-improv": list_msp_improv,
    "files": list_files,
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
