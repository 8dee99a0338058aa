r"""MELD: the Multimodal EmotionLines Dataset (dialogue from the TV series Friends).

Official layout (the declare-lab release; the CSVs also ship alone in the GitHub repository)::

    train_sent_emo.csv  dev_sent_emo.csv  test_sent_emo.csv
    train_splits/dia{D}_utt{U}.mp4                 clips, MELD.Raw only (train)
    dev_splits_complete/dia{D}_utt{U}.mp4          (dev)
    output_repeated_splits_test/dia{D}_utt{U}.mp4  (test)

CSV columns: ``Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season, Episode,
StartTime, EndTime``; quoted fields hold commas, so they are read with the csv module. The CSVs may lie in
the root or below it; a clip is found anywhere under the root in a folder whose name says its split
(train / dev / test), since dialogue and utterance numbers restart in every split.

Splits: train -> "train", dev -> "val", test -> "test". Ids are ``meld:{split}_dia{D}_utt{U}`` with that
split name; group is the dialogue (``meld:{split}_dia{D}``), speaker the character (``meld:Chandler``).
Emotions: anger ang, joy hap, neutral neu, sadness sad, surprise sur, fear fea, disgust dis.

Text repair. Copies of the CSVs are often mis-encoded: UTF-8 text read as cp1252 ("mojibake") or cp1252
bytes read as Latin-1 (C1 control characters). ``repair_text`` undoes exactly those two, and only where
the bytes decode as valid UTF-8 / cp1252, so correct text is never changed::

    "You mustâ€™ve"   -> "You must’ve"    (the UTF-8 bytes of ’ shown as cp1252)
    "â€œHi!â€¦"       -> "“Hi!…"
    "sautÃ©ed"        -> "sautéed"
    "must\x92ve"      -> "must’ve"         (U+0092: the cp1252 byte of ’ read as Latin-1)

Typographic quotes are kept (not folded to ASCII): they are what the text says, and the text encoder's
tokenizer reads them. A file that is not valid UTF-8 is read as Latin-1 and then repaired the same way.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from training.data.corpora import layout_error, walk_files
from training.data.corpus import Utterance, normalise_label

CORPUS = "meld"
SOURCE = (
    "MELD (Poria et al., ACL 2019) comes from declare-lab (github.com/declare-lab/MELD, GPL-3.0); "
    "the dialogue belongs to its rights holders."
)
EXPECTED = "train_sent_emo.csv, dev_sent_emo.csv and/or test_sent_emo.csv (MELD.Raw clips optional)"
CSV_SPLITS: dict[str, str] = {"train": "train", "dev": "val", "test": "test"}  # file prefix -> split
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4",)  # MELD.Raw clips
# Further CSV columns kept in extra (StartTime/EndTime locate the line in the episode, not in a clip).
_EXTRA_COLUMNS: dict[str, str] = {
    "Sentiment": "sentiment",
    "Season": "season",
    "Episode": "episode",
    "StartTime": "start_time",
    "EndTime": "end_time",
    "Sr No.": "sr_no",
}
_CLIP = re.compile(r"^dia(?P<dia>\d+)_utt(?P<utt>\d+)$")

# Each cp1252 byte 0x80-0xFF as the character a wrong decoder shows for it. The five bytes cp1252 leaves
# undefined (0x81 0x8D 0x8F 0x90 0x9D) come out as the C1 control of the same number.
_CHAR_TO_BYTE: dict[str, int] = {}
for _b in range(0x80, 0x100):
    try:
        _CHAR_TO_BYTE[bytes([_b]).decode("cp1252")] = _b
    except UnicodeDecodeError:
        _CHAR_TO_BYTE[chr(_b)] = _b
# A UTF-8 continuation byte (0x80-0xBF) as such a character.
_CONT = "".join(re.escape(c) for c, b in _CHAR_TO_BYTE.items() if 0x80 <= b <= 0xBF)
# A UTF-8 lead byte (as cp1252 = Latin-1 in 0xC2-0xF4) with exactly the continuations it announces.
_MOJIBAKE = re.compile(
    f"[\u00c2-\u00df][{_CONT}]|[\u00e0-\u00ef][{_CONT}]{{2}}|[\u00f0-\u00f4][{_CONT}]{{3}}"
)
_C1 = re.compile("[\u0080-\u009f]")


def _undo_mojibake(m: re.Match[str]) -> str:
    try:
        return bytes(_CHAR_TO_BYTE[c] for c in m.group(0)).decode("utf-8")
    except UnicodeDecodeError:  # not UTF-8 after all: a real accented letter followed by punctuation
        return m.group(0)


def _undo_c1(m: re.Match[str]) -> str:
    try:
        return bytes([ord(m.group(0))]).decode("cp1252")
    except UnicodeDecodeError:  # one of the five bytes cp1252 leaves undefined: nothing to restore
        return m.group(0)


def repair_text(text: str) -> str:
    """Undo UTF-8-read-as-cp1252 and cp1252-read-as-Latin-1 damage; correct text comes back unchanged."""
    return _C1.sub(_undo_c1, _MOJIBAKE.sub(_undo_mojibake, text))


def _read_rows(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # never fails; repair_text then maps cp1252 bytes back
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    needed = {"Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID"}
    if rows and not needed <= set(rows[0]):
        raise ValueError(f"{path}: expected MELD columns {sorted(needed)}, got {list(rows[0])}")
    return rows


def _find_csvs(root: Path, files: list[Path]) -> dict[str, Path]:
    """split -> CSV: the root's own file first, else the first one found below the root."""
    out: dict[str, Path] = {}
    for prefix, split in CSV_SPLITS.items():
        name = f"{prefix}_sent_emo.csv"
        if (root / name).is_file():
            out[split] = root / name
        else:
            found = next((p for p in files if p.name == name), None)
            if found is not None:
                out[split] = found
    return out


def _folder_split(path: Path, root: Path) -> str | None:
    """The split a clip belongs to, from the nearest folder (below root) whose name says it."""
    for folder in reversed(path.relative_to(root).parent.parts):
        name = folder.lower()
        for key, split in (("train", "train"), ("dev", "val"), ("val", "val"), ("test", "test")):
            if key in name:
                return split
    return None


def _clips(root: Path, files: list[Path]) -> dict[tuple[str, int, int], Path]:
    """(split, dialogue, utterance) -> clip for every dia{D}_utt{U}.mp4 in a split folder.

    Keyed by split as well, since every split numbers its dialogues from 0; files come sorted, so the
    first of two copies of a clip wins.
    """
    out: dict[tuple[str, int, int], Path] = {}
    for path in files:
        m = _CLIP.match(path.stem) if path.suffix.lower() in VIDEO_EXTENSIONS else None
        split = _folder_split(path, root) if m else None
        if m and split:
            out.setdefault((split, int(m.group("dia")), int(m.group("utt"))), path)
    return out


def _utterance(row: dict[str, str], split: str, video: Path | None) -> Utterance:
    dia, utt = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
    raw_label = row["Emotion"].strip()
    extra = {"raw_label": raw_label}
    extra.update({key: row[col].strip() for col, key in _EXTRA_COLUMNS.items() if row.get(col)})
    return Utterance(
        id=f"{CORPUS}:{split}_dia{dia}_utt{utt}",
        label=normalise_label(raw_label),
        speaker=f"{CORPUS}:{repair_text(row['Speaker']).strip()}",
        group=f"{CORPUS}:{split}_dia{dia}",
        audio_path=video,  # the clip's own audio track
        video_path=video,
        transcript=repair_text(row["Utterance"]).strip(),
        extra=extra,
        corpus=CORPUS,
        split=split,
    )


def list_meld(root: Path) -> list[Utterance]:
    """Every utterance of the MELD CSVs found under root (all 7 emotions), with its clip where present."""
    root = Path(root)
    files = walk_files(root) if root.is_dir() else []
    csvs = _find_csvs(root, files)
    if not csvs:
        raise layout_error(root, "MELD", EXPECTED, SOURCE)
    clips = _clips(root, files)
    out: list[Utterance] = []
    for split, path in csvs.items():
        for row in _read_rows(path):
            key = (split, int(row["Dialogue_ID"]), int(row["Utterance_ID"]))
            out.append(_utterance(row, split, clips.get(key)))
    return sorted(out, key=lambda u: u.id)
