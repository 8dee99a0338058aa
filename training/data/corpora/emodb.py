"""EmoDB: the Berlin Database of Emotional Speech (German, 10 actors, 10 sentences, 7 emotions).

Official layout (the download from emodb.bilderbar.info)::

    wav/03a01Fa.wav        SS TTT E V: speaker 03, text a01, emotion F, version a
    labsilb/ lablaut/ silb/  ... (phonetic labels, not read)

Speaker ``SS`` is one of 03 08 09 10 11 12 13 14 15 16; text ``TTT`` one of a01 a02 a04 a05 a07 b01 b02 b03
b09 b10; emotion ``E`` is W anger (ang), L boredom (bor), E disgust (dis), A fear (fea), F happiness (hap),
T sadness (sad), N neutral (neu); ``V`` tells repeated takes apart. The audio may also be FLAC (a converted
copy keeps the names), and the files may lie in ``wav/`` or directly in the root.

``extra`` holds the emotion letter (``raw_label``), text code, version, the German sentence
(``corpus_text``) and the speaker's gender and age, all from the corpus documentation.
"""

from __future__ import annotations

import re
from pathlib import Path

from training.data.corpora import index_by_stem, is_visible, layout_error
from training.data.corpus import Utterance

CORPUS = "emodb"
SOURCE = "EmoDB (Burkhardt et al., Interspeech 2005) is free for research use from emodb.bilderbar.info."
EXPECTED = "wav/SSTTTEV.wav (or .flac), e.g. wav/03a01Fa.wav, in the root or its wav/ folder"

_NAME = re.compile(r"^(?P<speaker>\d\d)(?P<text>[ab]\d\d)(?P<emotion>[WLEAFTN])(?P<version>[a-z])$")
EMOTIONS: dict[str, str] = {
    "W": "ang",  # Wut
    "L": "bor",  # Langeweile
    "E": "dis",  # Ekel
    "A": "fea",  # Angst
    "F": "hap",  # Freude
    "T": "sad",  # Trauer
    "N": "neu",
}
SENTENCES: dict[str, str] = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
# Speaker -> (gender, age at recording), from the corpus documentation.
SPEAKERS: dict[str, tuple[str, str]] = {
    "03": ("male", "31"),
    "08": ("female", "34"),
    "09": ("female", "21"),
    "10": ("male", "32"),
    "11": ("male", "26"),
    "12": ("male", "30"),
    "13": ("female", "32"),
    "14": ("female", "35"),
    "15": ("male", "25"),
    "16": ("female", "31"),
}
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac")  # the original .wav wins over a converted copy


def _audio_files(root: Path) -> dict[str, Path]:
    """stem -> audio file among the files in root/wav and in root itself (not deeper)."""
    files: list[Path] = []
    for folder in (root / "wav", root):
        if folder.is_dir():
            files.extend(sorted(p for p in folder.iterdir() if is_visible(p) and p.is_file()))
    return index_by_stem(files, AUDIO_EXTENSIONS)


def _utterance(path: Path, m: re.Match[str]) -> Utterance:
    spk = m.group("speaker")
    speaker = f"{CORPUS}:{spk}"
    extra = {"raw_label": m.group("emotion"), "text_code": m.group("text"), "version": m.group("version")}
    if m.group("text") in SENTENCES:
        extra["corpus_text"] = SENTENCES[m.group("text")]
    if spk in SPEAKERS:
        extra["gender"], extra["age"] = SPEAKERS[spk]
    return Utterance(
        id=f"{CORPUS}:{path.stem}",
        label=EMOTIONS[m.group("emotion")],
        speaker=speaker,
        group=speaker,
        audio_path=path,
        video_path=None,
        transcript=None,
        extra=extra,
        corpus=CORPUS,
    )


def list_emodb(root: Path) -> list[Utterance]:
    """Every EmoDB recording under root (or root/wav), all 7 emotions."""
    root = Path(root)
    audio = _audio_files(root) if root.is_dir() else {}
    out: list[Utterance] = []
    for stem, path in audio.items():
        m = _NAME.match(stem)
        if m is not None:
            out.append(_utterance(path, m))
    if not out:
        raise layout_error(root, "EmoDB", EXPECTED, SOURCE)
    return sorted(out, key=lambda u: u.id)
