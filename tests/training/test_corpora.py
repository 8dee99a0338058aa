"""The public-corpus loaders on real copies of each corpus, and on small official-layout trees built from
copies of those real files (the loaders read names and metadata, so a real clip under an official name is
a faithful stand-in for the release)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from training.data.corpus import FOUR_CLASSES, Utterance, class_counts, list_corpus

REPO = Path(__file__).resolve().parents[2]
# The real corpus copies live in the shared data folder next to the repository.
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
ROOTS = {
    "ravdess": "ravdess-speech",
    "emodb": "emodb",
    "meld": "meld-text",
    "fer2013": "fer2013-4class.npz",
    "cremad": "cremad-clips",
}


@pytest.fixture(scope="module")
def data() -> Path:
    if not DATA.is_dir():
        pytest.skip("the real corpus copies (shared/data next to the repository) are not on this machine")
    return DATA


@pytest.fixture(scope="module")
def real(data: Path) -> dict[str, list[Utterance]]:
    """Each corpus listed once through the single entry point."""
    return {kind: list_corpus(kind, data / folder) for kind, folder in ROOTS.items()}


def four(utts: list[Utterance]) -> dict[str, int]:
    return {k: v for k, v in class_counts(utts).items() if k in FOUR_CLASSES}


# --------------------------------------------------------------------------------------------------
# All corpora
# --------------------------------------------------------------------------------------------------
def test_conventions_hold_for_every_corpus(real: dict[str, list[Utterance]]) -> None:
    ids = [u.id for utts in real.values() for u in utts]
    assert len(ids) == len(set(ids)) == 1380 + 535 + 13708 + 26217 + 12
    for kind, utts in real.items():
        assert [u.id for u in utts] == sorted(u.id for u in utts), kind
        for u in utts:
            assert u.corpus == kind and u.id.startswith(f"{kind}:") and "/" not in u.id
            assert u.speaker.startswith(f"{kind}:") and u.label is not None
            assert all(isinstance(v, str) for v in u.extra.values()) and "raw_label" in u.extra


@pytest.mark.parametrize(
    ("kind", "layout", "licence"),
    [
        ("ravdess", "Actor_XX/MM-VV-EE-II-SS-RR-AA.wav", "CC BY-NC-SA 4.0"),
        ("emodb", "wav/SSTTTEV.wav", "free for research use"),
        ("meld", "train_sent_emo.csv", "GPL-3.0"),
        ("fer2013", "fer2013.csv (emotion,pixels,Usage)", "research use"),
        ("cremad", "AudioWAV/*.wav and/or VideoFlash/*.flv", "Open Database License"),
    ],
)
def test_wrong_root_names_layout_and_source(tmp_path: Path, kind: str, layout: str, licence: str) -> None:
    (tmp_path / "notes.txt").write_text("not a corpus\n")
    for root in (tmp_path, tmp_path / "missing"):
        with pytest.raises(FileNotFoundError) as err:
            list_corpus(kind, root)
        assert str(root) in str(err.value) and layout in str(err.value) and licence in str(err.value)


def test_registration_is_lazy_and_cycle_free() -> None:
    # Importing the registry must not import the loaders, and importing a loader first must work.
    code = (
        "import sys; import training.data.corpus as c; "
        "assert not [m for m in sys.modules if m.startswith('training.data.corpora')]; "
        "assert {'ravdess', 'emodb', 'meld', 'fer2013', 'cremad'} <= set(c.CORPORA); "
        "import training.data.corpora.cremad, training.data.corpora.meld"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    subprocess.run([sys.executable, "-c", "import training.data.corpora.fer2013"], cwd=REPO, check=True)


# --------------------------------------------------------------------------------------------------
# RAVDESS
# --------------------------------------------------------------------------------------------------
def test_ravdess_real(real: dict[str, list[Utterance]]) -> None:
    utts = real["ravdess"]
    assert len(utts) == 1380
    assert class_counts(utts) == {
        "ang": 184, "cal": 184, "dis": 184, "fea": 184, "hap": 184, "neu": 92, "sad": 184, "sur": 184
    }  # fmt: skip
    assert four(utts) == {"ang": 184, "hap": 184, "neu": 92, "sad": 184}
    speakers = Counter(u.speaker for u in utts)
    assert len(speakers) == 23 and "ravdess:05" not in speakers and set(speakers.values()) == {60}
    u = next(u for u in utts if u.id == "ravdess:03-01-05-02-02-01-12")
    assert u.label == "ang" and u.speaker == u.group == "ravdess:12" and u.split is None
    assert u.transcript is None and u.extra["corpus_text"] == "Dogs are sitting by the door"
    assert u.extra["gender"] == "female" and u.extra["intensity"] == "strong"
    assert u.extra["vocal_channel"] == "speech" and u.extra["modality"] == "audio"
    assert u.audio_path is not None and u.audio_path.suffix == ".flac" and u.video_path is None
    assert next(u for u in utts if u.speaker == "ravdess:01").extra["gender"] == "male"


def test_ravdess_official_names(data: Path, tmp_path: Path) -> None:
    flac = data / "ravdess-speech" / "Actor_12" / "03-01-05-02-02-01-12.flac"
    flv = data / "cremad-clips" / "1001_DFA_ANG_XX.flv"
    actor = tmp_path / "Actor_12"
    actor.mkdir()
    shutil.copy(flac, actor / "03-01-05-02-02-01-12.wav")  # the official release's extension
    shutil.copy(flac, actor / "03-01-05-02-02-01-12.flac")  # a converted copy of the same file: .wav wins
    shutil.copy(flac, actor / "03-02-05-02-02-01-12.wav")  # song
    shutil.copy(flv, actor / "01-01-05-02-02-01-12.mp4")  # audio + video
    shutil.copy(flv, actor / "02-01-05-02-02-01-12.mp4")  # video only
    shutil.copy(flac, actor / "._03-01-05-02-02-01-12.wav")  # a macOS resource fork: ignored
    utts = {u.id.split(":")[1]: u for u in list_corpus("ravdess", tmp_path)}
    assert sorted(utts) == ["01-01-05-02-02-01-12", "02-01-05-02-02-01-12", "03-01-05-02-02-01-12"]
    av, vo, ao = (utts[f"0{m}-01-05-02-02-01-12"] for m in (1, 2, 3))
    assert av.audio_path == av.video_path == actor / "01-01-05-02-02-01-12.mp4"
    assert vo.audio_path is None and vo.video_path == actor / "02-01-05-02-02-01-12.mp4"
    assert ao.audio_path == actor / "03-01-05-02-02-01-12.wav" and ao.video_path is None
    assert {u.extra["recording"] for u in utts.values()} == {"01-05-02-02-01-12"}
    assert [u.extra["modality"] for u in (av, vo, ao)] == ["audio-video", "video", "audio"]
    assert all(u.label == "ang" and u.speaker == "ravdess:12" for u in utts.values())

    from training.data.corpora.ravdess import list_ravdess

    song = [u for u in list_ravdess(tmp_path, include_song=True) if u.extra["vocal_channel"] == "song"]
    assert [u.id for u in song] == ["ravdess:03-02-05-02-02-01-12"]


# --------------------------------------------------------------------------------------------------
# EmoDB
# --------------------------------------------------------------------------------------------------
def test_emodb_real(real: dict[str, list[Utterance]]) -> None:
    utts = real["emodb"]
    assert len(utts) == 535
    assert four(utts) == {"ang": 127, "hap": 71, "neu": 79, "sad": 62}
    assert class_counts(utts) == {
        "ang": 127, "bor": 81, "dis": 46, "fea": 69, "hap": 71, "neu": 79, "sad": 62
    }  # fmt: skip
    speakers = {u.speaker for u in utts}
    assert speakers == {f"emodb:{s}" for s in ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")}
    u = utts[0]
    assert u.id == "emodb:03a01Fa" and u.label == "hap" and u.extra["raw_label"] == "F"
    assert u.extra["corpus_text"] == "Der Lappen liegt auf dem Eisschrank."
    assert u.extra["gender"] == "male" and u.transcript is None and u.group == "emodb:03"
    texts = {u.extra["text_code"] for u in utts}
    assert texts == {"a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10"}
    assert all("corpus_text" in u.extra for u in utts)


def test_emodb_files_in_the_root(data: Path, tmp_path: Path) -> None:
    for name in ("03a01Wa.flac", "16b10Lb.flac"):
        shutil.copy(data / "emodb" / "wav" / name, tmp_path / name)
    utts = list_corpus("emodb", tmp_path)
    assert [(u.id, u.label, u.speaker) for u in utts] == [
        ("emodb:03a01Wa", "ang", "emodb:03"),
        ("emodb:16b10Lb", "bor", "emodb:16"),
    ]


# --------------------------------------------------------------------------------------------------
# MELD
# --------------------------------------------------------------------------------------------------
def test_meld_real(real: dict[str, list[Utterance]]) -> None:
    utts = real["meld"]
    assert Counter(u.split for u in utts) == {"train": 9989, "val": 1109, "test": 2610}
    assert four(utts) == {"ang": 1607, "hap": 2308, "neu": 6436, "sad": 1002}
    assert set(class_counts(utts)) == {"ang", "dis", "fea", "hap", "neu", "sad", "sur"}
    u = next(u for u in utts if u.id == "meld:train_dia0_utt0")
    assert u.speaker == "meld:Chandler" and u.group == "meld:train_dia0" and u.label == "neu"
    assert u.transcript == (
        "also I was the point person on my company’s transition from the KL-5 to GR-6 system."
    )
    assert u.audio_path is None and u.video_path is None and u.extra["sentiment"] == "neutral"
    main = {f"meld:{n}" for n in ("Chandler", "Joey", "Monica", "Phoebe", "Rachel", "Ross")}
    assert main <= {u.speaker for u in utts}
    assert all(u.transcript for u in utts)
    assert {u.id.split("_")[0] for u in utts} == {"meld:train", "meld:val", "meld:test"}


def test_meld_repair_text() -> None:
    from training.data.corpora.meld import repair_text

    assert repair_text("You mustâ€™ve") == "You must’ve"
    assert repair_text("â€œHi!â€\x9d") == "“Hi!”"
    assert repair_text("sautÃ©ed") == "sautéed"
    assert repair_text("must\x92ve") == "must’ve"
    for clean in ("You must’ve", "pâté, naïve café", "‘Cause… “no” — ok", "Ã"):
        assert repair_text(clean) == clean


def _mojibake(text: str) -> str:
    """text as a wrong decoder shows its UTF-8 bytes: cp1252 where defined, else the C1 control."""
    return "".join(
        (bytes([ord(c)]).decode("cp1252", errors="ignore") or c) if 0x80 <= ord(c) <= 0x9F else c
        for c in text.encode("utf-8").decode("latin-1")
    )


def test_meld_damaged_copies_read_like_the_clean_one(data: Path, tmp_path: Path) -> None:
    clean = (data / "meld-text" / "dev_sent_emo.csv").read_text(encoding="utf-8")
    mojibake, cp1252 = tmp_path / "mojibake", tmp_path / "cp1252"
    mojibake.mkdir()
    cp1252.mkdir()
    (mojibake / "dev_sent_emo.csv").write_text(_mojibake(clean), encoding="utf-8")
    (cp1252 / "dev_sent_emo.csv").write_bytes(clean.encode("cp1252"))
    listed = list_corpus("meld", data / "meld-text")
    want = [(u.id, u.transcript, u.speaker) for u in listed if u.split == "val"]
    assert any("’" in (t or "") for _, t, _ in want)
    for root in (mojibake, cp1252):
        assert [(u.id, u.transcript, u.speaker) for u in list_corpus("meld", root)] == want


def test_meld_clips_by_split(data: Path, tmp_path: Path) -> None:
    for name in ("dev_sent_emo.csv", "test_sent_emo.csv"):
        shutil.copy(data / "meld-text" / name, tmp_path / name)
    flv = data / "cremad-clips" / "1001_DFA_NEU_XX.flv"  # a real clip under MELD.Raw's names
    dev_clip = tmp_path / "dev_splits_complete" / "dia0_utt0.mp4"
    test_clip = tmp_path / "output_repeated_splits_test" / "dia0_utt1.mp4"
    train_clip = tmp_path / "train_splits" / "dia0_utt2.mp4"  # no train CSV here: belongs to nothing
    for clip in (dev_clip, test_clip, train_clip):
        clip.parent.mkdir(exist_ok=True)
        shutil.copy(flv, clip)
    utts = {u.id: u for u in list_corpus("meld", tmp_path)}
    assert len(utts) == 1109 + 2610
    assert utts["meld:val_dia0_utt0"].video_path == utts["meld:val_dia0_utt0"].audio_path == dev_clip
    assert utts["meld:test_dia0_utt1"].video_path == test_clip
    # Numbers restart in every split: a dev clip is not the test utterance of the same numbers.
    assert utts["meld:test_dia0_utt0"].video_path is None and utts["meld:val_dia0_utt1"].video_path is None
    with_clip = [u.id for u in utts.values() if u.video_path is not None]
    assert with_clip == ["meld:test_dia0_utt1", "meld:val_dia0_utt0"]


# --------------------------------------------------------------------------------------------------
# FER2013
# --------------------------------------------------------------------------------------------------
FER_COUNTS = {
    "train": {"ang": 3995, "hap": 7215, "neu": 4965, "sad": 4830},
    "val": {"ang": 467, "hap": 895, "neu": 607, "sad": 653},
    "test": {"ang": 491, "hap": 879, "neu": 626, "sad": 594},
}


def test_fer2013_npz_real(data: Path, real: dict[str, list[Utterance]]) -> None:
    start = time.perf_counter()
    utts = list_corpus("fer2013", data)  # the folder that holds the npz
    assert time.perf_counter() - start < 10.0  # listing reads labels only, not 26k images
    assert [u.id for u in utts] == [u.id for u in real["fer2013"]]
    counts: dict[str, Counter[str]] = {}
    for u in utts:
        counts.setdefault(u.split or "", Counter())[u.label or ""] += 1
    assert counts == FER_COUNTS
    assert all(u.speaker == u.id and u.group == f"fer2013:{u.split}" for u in utts)
    assert all(u.audio_path is None and u.video_path is None and u.image is not None for u in utts)

    with np.load(data / "fer2013-4class.npz") as z:
        images, names = z["images"], [Path(n).stem for n in z["name"].tolist()]
    row = {f"fer2013:{n}": i for i, n in enumerate(names)}
    for u in (utts[0], utts[12345], utts[-1]):
        img = u.image()  # type: ignore[misc]
        assert img.shape == (48, 48) and img.dtype == np.uint8
        assert np.array_equal(img, images[row[u.id]])
    first = utts[0].image()  # type: ignore[misc]
    first[:] = 0  # a caller's change must not reach the shared array
    assert np.array_equal(utts[0].image(), images[row[utts[0].id]])  # type: ignore[misc]


def test_fer2013_csv(data: Path, tmp_path: Path) -> None:
    with np.load(data / "fer2013-4class.npz") as z:
        labels, splits, names = z["label"], z["split"], z["name"]
        picks = [int(np.flatnonzero((splits == s) & (labels == c))[0]) for s in ("train", "val", "test")
                 for c in ("ang", "sad")]  # fmt: skip
        images = z["images"][picks]
    code = {"ang": "0", "hap": "3", "sad": "4", "neu": "6"}
    usage = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
    folder = tmp_path / "fer2013"  # as Kaggle's archive unpacks
    folder.mkdir()
    with open(folder / "fer2013.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for i, img in zip(picks, images, strict=True):
            w.writerow([code[labels[i]], " ".join(map(str, img.ravel().tolist())), usage[splits[i]]])
    for root in (folder / "fer2013.csv", tmp_path):
        utts = {u.id: u for u in list_corpus("fer2013", root)}
        assert sorted(utts) == sorted(f"fer2013:{usage[splits[i]]}_{r:05d}" for r, i in enumerate(picks))
        for r, i in enumerate(picks):
            u = utts[f"fer2013:{usage[splits[i]]}_{r:05d}"]
            assert u.label == labels[i] and u.split == splits[i] and u.extra["raw_label"] == code[labels[i]]
            assert np.array_equal(u.image(), images[r])  # type: ignore[misc]
    assert (names[picks] != "").all()


# --------------------------------------------------------------------------------------------------
# CREMA-D
# --------------------------------------------------------------------------------------------------
def test_cremad_bundled_copy(real: dict[str, list[Utterance]]) -> None:
    utts = real["cremad"]
    with_video = [u for u in utts if u.video_path is not None]
    audio_only = [u for u in utts if u.video_path is None]
    assert len(with_video) == 6 and all(str(u.video_path).endswith(".flv") for u in with_video)
    # The separate 16 kHz wav is preferred over the flv's own track.
    assert all(u.audio_path is not None and u.audio_path.suffix == ".wav" for u in with_video)
    assert len(audio_only) == 6 and all(str(u.audio_path).endswith(".mp3") for u in audio_only)
    assert {u.speaker for u in with_video} == {"cremad:1001"}
    assert {u.speaker for u in audio_only} == {"cremad:1002"}
    assert class_counts(utts) == {c: 2 for c in ("ang", "dis", "fea", "hap", "neu", "sad")}
    assert all(u.extra["corpus_text"] == "Don't forget a jacket" and u.transcript is None for u in utts)
    assert all(u.group == u.speaker and u.split is None and "sex" not in u.extra for u in utts)


def test_cremad_official_layout(data: Path, tmp_path: Path) -> None:
    src = data / "cremad-clips"
    for folder in ("AudioWAV", "AudioMP3", "VideoFlash"):
        (tmp_path / folder).mkdir()
    shutil.copy(src / "wav16k" / "1001_DFA_ANG_XX.wav", tmp_path / "AudioWAV")
    shutil.copy(src / "1001_DFA_ANG_XX.flv", tmp_path / "VideoFlash")
    shutil.copy(src / "1001_DFA_SAD_XX.flv", tmp_path / "VideoFlash")  # no separate audio for this one
    shutil.copy(src / "audio-1002" / "1002_DFA_HAP_XX.mp3", tmp_path / "AudioMP3")
    # The official CSVs' own rows for these actors and clips.
    (tmp_path / "VideoDemographics.csv").write_text(
        '"ActorID","Age","Sex","Race","Ethnicity"\n'
        '1001,51,"Male","Caucasian","Not Hispanic"\n'
        '1002,21,"Female","Caucasian","Not Hispanic"\n'
    )
    (tmp_path / "SentenceFilenames.csv").write_text(
        '"Stimulus_Number","Filename"\n60,"1001_DFA_HAP_XX"\n61,"1001_DFA_SAD_XX"\n62,"1001_DFA_ANG_XX"\n'
        '141,"1002_DFA_HAP_XX"\n'
    )
    utts = {u.id: u for u in list_corpus("cremad", tmp_path)}
    assert sorted(utts) == ["cremad:1001_DFA_ANG_XX", "cremad:1001_DFA_SAD_XX", "cremad:1002_DFA_HAP_XX"]
    ang, sad, hap = (utts[f"cremad:{n}"] for n in ("1001_DFA_ANG_XX", "1001_DFA_SAD_XX", "1002_DFA_HAP_XX"))
    assert ang.audio_path == tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav"
    assert ang.video_path == tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv"
    assert sad.audio_path == sad.video_path == tmp_path / "VideoFlash" / "1001_DFA_SAD_XX.flv"
    assert hap.audio_path == tmp_path / "AudioMP3" / "1002_DFA_HAP_XX.mp3" and hap.video_path is None
    assert (ang.extra["sex"], ang.extra["age"]) == ("male", "51")
    assert (hap.extra["sex"], hap.extra["age"]) == ("female", "21")
    assert (ang.extra["stimulus"], sad.extra["stimulus"], hap.extra["stimulus"]) == ("62", "61", "141")
    assert (ang.label, sad.label, hap.label) == ("ang", "sad", "hap") and ang.extra["level"] == "unspecified"
