"""IEMOCAP: the official release (``Session{1..5}/dialog/EmoEvaluation/*.txt`` for labels,
``sentences/wav/<dialog>/<utt>.wav`` for audio, ``dialog/transcriptions/<dialog>.txt`` for text,
``dialog/avi/DivX/<dialog>.avi`` for the dialogue video; an utterance's video is the span [start, end] of
its dialogue video). Group = session, the leave-one-session-out folds."""

from __future__ import annotations

import re
from pathlib import Path

from training.data.corpus import IEMOCAP_SESSIONS, Utterance

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
