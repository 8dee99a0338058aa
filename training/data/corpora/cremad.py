"""CREMA-D: the Crowd-sourced Emotional Multimodal Actors Dataset (91 actors, 12 sentences, 6 emotions).

Official layout (github.com/CheyneyComputerScience/CREMA-D)::

    AudioWAV/1001_DFA_ANG_XX.wav      16 kHz audio
    AudioMP3/1001_DFA_ANG_XX.mp3      the same audio as mp3
    VideoFlash/1001_DFA_ANG_XX.flv    video with its own (mp3) audio track
    VideoDemographics.csv             ActorID, Age, Sex, Race, Ethnicity          (optional here)
    SentenceFilenames.csv             Stimulus_Number, Filename                   (optional here)

A flat copy (``*.flv`` in the root, audio in any sub-folder) reads the same: media are indexed
recursively by file stem. Video is a .flv (or a converted .mp4); audio is a separate .wav, .flac or .mp3
when there is one (in that order of preference), else the video file's own track. A name with audio only
lists with no video.

File names are ``AAAA_SSS_EEE_LL``: actor id, sentence code, emotion (ANG ang, DIS dis, FEA fea, HAP hap,
NEU neu, SAD sad) and level (LO low, MD medium, HI high, XX unspecified). Labels come from the name (the
intended emotion), not from the crowd ratings. Speaker = actor; there is no official split.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from training.data.corpora import index_by_stem, layout_error, walk_files
from training.data.corpus import Utterance

CORPUS = "cremad"
SOURCE = (
    "CREMA-D (Cao et al., IEEE Trans. Affective Computing 2014) comes from "
    "github.com/CheyneyComputerScience/CREMA-D under the Open Database License (ODbL)."
)
EXPECTED = "AudioWAV/*.wav and/or VideoFlash/*.flv named AAAA_SSS_EEE_LL, e.g. 1001_DFA_ANG_XX"

_NAME = re.compile(
    r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>ANG|DIS|FEA|HAP|NEU|SAD)_(?P<level>LO|MD|HI|XX)$"
)
EMOTIONS: dict[str, str] = {
    "ANG": "ang", "DIS": "dis", "FEA": "fea", "HAP": "hap", "NEU": "neu", "SAD": "sad"
}  # fmt: skip
LEVELS: dict[str, str] = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
VIDEO_EXTENSIONS: tuple[str, ...] = (".flv", ".mp4")
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".mp3")  # lossless first


def _read_csv(path: Path | None) -> list[dict[str, str]]:
    if path is None:
        return []
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def _demographics(path: Path | None) -> dict[str, dict[str, str]]:
    """actor id -> {"age", "sex", "race", "ethnicity"} from VideoDemographics.csv ("male"/"female")."""
    out: dict[str, dict[str, str]] = {}
    for row in _read_csv(path):
        actor = row.get("ActorID", "")
        if actor:
            fields = {"age": row.get("Age", ""), "sex": row.get("Sex", "").lower()}
            fields.update({"race": row.get("Race", ""), "ethnicity": row.get("Ethnicity", "")})
            out[actor] = {k: v for k, v in fields.items() if v}
    return out


def _stimuli(path: Path | None) -> dict[str, str]:
    """file stem -> stimulus number in SentenceFilenames.csv (the list of clips used in the rating study)."""
    return {r["Filename"]: r.get("Stimulus_Number", "") for r in _read_csv(path) if r.get("Filename")}


def _first_named(files: list[Path], name: str) -> Path | None:
    return next((p for p in files if p.name == name), None)


def _utterance(
    m: re.Match[str], video: Path | None, audio: Path | None, demo: dict[str, str], stimulus: str | None
) -> Utterance:
    actor = m.group("actor")
    speaker = f"{CORPUS}:{actor}"
    extra = {
        "raw_label": m.group("emotion"),
        "sentence": m.group("sentence"),
        "level": LEVELS[m.group("level")],
        **demo,
    }
    if m.group("sentence") in SENTENCES:
        extra["corpus_text"] = SENTENCES[m.group("sentence")]
    if stimulus:
        extra["stimulus"] = stimulus
    return Utterance(
        id=f"{CORPUS}:{m.group(0)}",
        label=EMOTIONS[m.group("emotion")],
        speaker=speaker,
        group=speaker,
        audio_path=audio or video,  # without a separate audio file, the video's own track
        video_path=video,
        transcript=None,
        extra=extra,
        corpus=CORPUS,
    )


def list_cremad(root: Path) -> list[Utterance]:
    """Every CREMA-D clip under root (all 6 emotions): video, audio or both, matched by file stem."""
    root = Path(root)
    files = walk_files(root) if root.is_dir() else []
    videos = index_by_stem(files, VIDEO_EXTENSIONS)
    audios = index_by_stem(files, AUDIO_EXTENSIONS)
    demographics = _demographics(_first_named(files, "VideoDemographics.csv"))
    stimuli = _stimuli(_first_named(files, "SentenceFilenames.csv"))
    out: list[Utterance] = []
    for stem in sorted(set(videos) | set(audios)):
        m = _NAME.match(stem)
        if m is None:
            continue
        demo = demographics.get(m.group("actor"), {})
        out.append(_utterance(m, videos.get(stem), audios.get(stem), demo, stimuli.get(stem)))
    if not out:
        raise layout_error(root, "CREMA-D", EXPECTED, SOURCE)
    return sorted(out, key=lambda u: u.id)
