"""RAVDESS: the Ryerson Audio-Visual Database of Emotional Speech and Song.

Official layout (the Zenodo release; each zip unpacks to one folder per actor)::

    Actor_01/03-01-05-01-01-01-01.wav    audio-only speech (Audio_Speech_Actors_01-24.zip)
    Actor_01/03-02-05-01-01-01-01.wav    audio-only song (Audio_Song_Actors_01-24.zip)
    Actor_01/01-01-05-01-01-01-01.mp4    audio + video (Video_Speech_Actor_01.zip)
    Actor_01/02-01-05-01-01-01-01.mp4    video only, no audio track (same zip)

File names are seven two-digit fields ``MM-VV-EE-II-SS-RR-AA``: modality (01 audio+video, 02 video only,
03 audio only), vocal channel (01 speech, 02 song), emotion (01 neutral, 02 calm, 03 happy, 04 sad,
05 angry, 06 fearful, 07 disgust, 08 surprised), intensity (01 normal, 02 strong; neutral has no strong),
statement (01 "Kids are talking by the door", 02 "Dogs are sitting by the door"), repetition (01, 02) and
actor (01-24; odd = male, even = female). Audio may also be FLAC (a converted copy keeps the names).

Files are found anywhere under the root by their official name, so the speech, song and video zips may be
unpacked side by side. Each file is one utterance: the 01, 02 and 03 files of one performance share
``extra["recording"]``, which lets a caller keep one file per performance.
"""

from __future__ import annotations

import re
from pathlib import Path

from training.data.corpora import index_by_stem, layout_error, walk_files
from training.data.corpus import Utterance

CORPUS = "ravdess"
SOURCE = (
    "RAVDESS (Livingstone & Russo, PLoS ONE 2018) comes from Zenodo (zenodo.org/record/1188976) "
    "under CC BY-NC-SA 4.0."
)
EXPECTED = "Actor_XX/MM-VV-EE-II-SS-RR-AA.wav (or .flac; .mp4 for the audio-visual files)"

_NAME = re.compile(
    r"^(?P<modality>0[1-3])-(?P<channel>0[12])-(?P<emotion>0[1-8])-(?P<intensity>0[12])-"
    r"(?P<statement>0[12])-(?P<repetition>0[12])-(?P<actor>\d\d)$"
)
EMOTIONS: dict[str, str] = {
    "01": "neu",
    "02": "cal",
    "03": "hap",
    "04": "sad",
    "05": "ang",
    "06": "fea",
    "07": "dis",
    "08": "sur",
}
STATEMENTS: dict[str, str] = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
MODALITIES: dict[str, str] = {"01": "audio-video", "02": "video", "03": "audio"}
CHANNELS: dict[str, str] = {"01": "speech", "02": "song"}
INTENSITIES: dict[str, str] = {"01": "normal", "02": "strong"}
# The official audio is .wav; a converted copy may be .flac. Video files are always .mp4.
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac")
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4",)


def _utterance(path: Path, m: re.Match[str]) -> Utterance:
    modality, actor = m.group("modality"), m.group("actor")
    speaker = f"{CORPUS}:{actor}"
    is_video = modality in ("01", "02")
    return Utterance(
        id=f"{CORPUS}:{path.stem}",
        label=EMOTIONS[m.group("emotion")],
        speaker=speaker,
        group=speaker,
        # Modality 02 files are silent; modality 01 files carry the audio in the same container.
        audio_path=None if modality == "02" else path,
        video_path=path if is_video else None,
        transcript=None,
        extra={
            "raw_label": m.group("emotion"),
            "modality": MODALITIES[modality],
            "vocal_channel": CHANNELS[m.group("channel")],
            "intensity": INTENSITIES[m.group("intensity")],
            "statement": m.group("statement"),
            "repetition": m.group("repetition"),
            "gender": "male" if int(actor) % 2 == 1 else "female",
            "corpus_text": STATEMENTS[m.group("statement")],
            "recording": path.stem[3:],  # the name without the modality field
        },
        corpus=CORPUS,
    )


def list_ravdess(root: Path, include_song: bool = False) -> list[Utterance]:
    """RAVDESS files under root, one utterance per file; song files (channel 02) only with include_song."""
    root = Path(root)
    if not root.is_dir():
        raise layout_error(root, "RAVDESS", EXPECTED, SOURCE)
    files = walk_files(root)
    audio = index_by_stem(files, AUDIO_EXTENSIONS)
    video = index_by_stem(files, VIDEO_EXTENSIONS)
    out: list[Utterance] = []
    matched = 0
    for stem, path in [*audio.items(), *video.items()]:
        m = _NAME.match(stem)
        # A name's modality must fit its file type: 03 is audio, 01/02 are video.
        if m is None or (m.group("modality") == "03") != (path.suffix.lower() in AUDIO_EXTENSIONS):
            continue
        matched += 1
        if m.group("channel") == "02" and not include_song:
            continue
        out.append(_utterance(path, m))
    if matched == 0:
        raise layout_error(root, "RAVDESS", EXPECTED, SOURCE)
    return sorted(out, key=lambda u: u.id)
