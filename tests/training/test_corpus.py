"""Corpus listings on fake trees that reproduce the real release formats, and on the bundled CREMA-D clips."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data.corpus import class_counts, list_corpus, normalise_label

REPO = Path(__file__).resolve().parents[2]

# Verbatim shape of an IEMOCAP EmoEvaluation file: a header, then one block per turn whose first line is
# "[start - end]\tTURN\tEMO\t[V, A, D]" followed by evaluator lines.
EMO_EVAL = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
C-E3:\tNeutral;\t()
C-E4:\tNeutral;\t()
C-F1:\tNeutral;\t(curious)
A-E3:\tval 3; act 2; dom  2;\t()
A-E4:\tval 2; act 3; dom  3;\t(mildly aggravated but staying polite, attitude)
A-F1:\tval 3; act 2; dom  1;\t()

[10.0100 - 11.3925]\tSes01F_impro01_F001\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()

[14.8872 - 18.0175]\tSes01F_impro01_F002\txxx\t[2.5000, 3.0000, 2.5000]
C-E2:\tNeutral;\t()

[19.2900 - 20.7875]\tSes01F_impro01_M000\tfru\t[2.5000, 3.5000, 3.5000]
C-E2:\tFrustration;\t()

[21.3212 - 24.0013]\tSes01F_impro01_M001\texc\t[4.0000, 3.5000, 3.0000]
C-E2:\tExcited;\t()

[25.0000 - 27.5000]\tSes01F_impro01_M002\tang\t[1.5000, 4.0000, 4.0000]
C-E2:\tAnger;\t()
"""

TRANSCRIPT = """Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.
Ses01F_impro01_F001 [010.0100-011.3925]: Yeah.
Ses01F_impro01_M000 [019.2900-020.7875]: Is there a problem?
Ses01F_impro01_M001 [021.3212-024.0013]: Yes, we got it!
Ses01F_impro01_M002 [025.0000-027.5000]: No. Listen to me.
"""

EMO_EVAL_S2 = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[1.0000 - 2.5000]\tSes02M_script01_1_F000\tsad\t[2.0000, 2.0000, 2.0000]
C-E1:\tSadness;\t()

[3.0000 - 4.0000]\tSes02M_script01_1_M000\thap\t[4.0000, 3.0000, 3.0000]
C-E1:\tHappiness;\t()
"""


def _iemocap_tree(root: Path, with_video: bool = True) -> Path:
    s1 = root / "Session1"
    (s1 / "dialog" / "EmoEvaluation" / "Categorical").mkdir(parents=True)
    (s1 / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_text(EMO_EVAL)
    # Sub-folder files use another format and must not be read as labels.
    (s1 / "dialog" / "EmoEvaluation" / "Categorical" / "Ses01F_impro01_e2_cat.txt").write_text(
        "Ses01F_impro01_F000 :Neutral state; ()\n"
    )
    (s1 / "dialog" / "EmoEvaluation" / "._Ses01F_impro01.txt").write_bytes(b"\x00\x05\x16\x07")
    (s1 / "dialog" / "transcriptions").mkdir(parents=True)
    (s1 / "dialog" / "transcriptions" / "Ses01F_impro01.txt").write_text(TRANSCRIPT)
    wav_dir = s1 / "sentences" / "wav" / "Ses01F_impro01"
    wav_dir.mkdir(parents=True)
    for turn in ("F000", "F001", "F002", "M000", "M001", "M002"):
        (wav_dir / f"Ses01F_impro01_{turn}.wav").write_bytes(b"RIFF")
    if with_video:
        (s1 / "dialog" / "avi" / "DivX").mkdir(parents=True)
        (s1 / "dialog" / "avi" / "DivX" / "Ses01F_impro01.avi").write_bytes(b"RIFF")
    s2 = root / "Session2"
    (s2 / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (s2 / "dialog" / "EmoEvaluation" / "Ses02M_script01_1.txt").write_text(EMO_EVAL_S2)
    return root


def test_iemocap_listing(tmp_path: Path) -> None:
    utts = list_corpus("iemocap", _iemocap_tree(tmp_path))
    ids = [u.id for u in utts]
    # xxx and fru are dropped; exc is merged into hap.
    assert ids == [
        "Ses01F_impro01_F000",
        "Ses01F_impro01_F001",
        "Ses01F_impro01_M001",
        "Ses01F_impro01_M002",
        "Ses02M_script01_1_F000",
        "Ses02M_script01_1_M000",
    ]
    by_id = {u.id: u for u in utts}
    u = by_id["Ses01F_impro01_M001"]
    assert u.label == "hap" and u.extra["raw_label"] == "exc"
    assert u.speaker == "Ses01M" and u.group == "Session1"
    assert u.start == pytest.approx(21.3212) and u.end == pytest.approx(24.0013)
    assert u.transcript == "Yes, we got it!"
    assert u.audio_path is not None and u.audio_path.name == "Ses01F_impro01_M001.wav"
    assert u.video_path is not None and u.video_path.name == "Ses01F_impro01.avi"
    assert by_id["Ses01F_impro01_F000"].speaker == "Ses01F"
    # Session 2 has no media or transcripts in this tree: listed with None paths, not an error.
    s2 = by_id["Ses02M_script01_1_F000"]
    assert s2.group == "Session2" and s2.speaker == "Ses02F" and s2.audio_path is None
    assert s2.video_path is None and s2.transcript is None and s2.label == "sad"
    assert class_counts(utts) == {"ang": 1, "hap": 2, "neu": 2, "sad": 1}


def test_iemocap_video_without_divx_folder(tmp_path: Path) -> None:
    root = _iemocap_tree(tmp_path, with_video=False)
    (root / "Session1" / "dialog" / "avi").mkdir(parents=True)
    (root / "Session1" / "dialog" / "avi" / "Ses01F_impro01.avi").write_bytes(b"RIFF")
    utts = list_corpus("iemocap", root)
    assert utts[0].video_path is not None and utts[0].video_path.parent.name == "avi"


def test_iemocap_wrong_root_names_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="EmoEvaluation"):
        list_corpus("iemocap", tmp_path)


# Verbatim shape of MSP-IMPROV's Evalution.txt: a consensus line per clip then one line per rater.
MSP_EVAL = """UTD-IMPROV-S01A-F01-P-FM01.avi; N; A:3.000000; V:3.000000; D:3.000000 ; N:3.000000;
Rater-1; Neutral; Neutral; A:3.000000; V:3.000000; D:3.000000; N:3.000000;
Rater-2; Neutral; ; A:3.000000; V:3.000000; D:3.000000; N:3.000000;

UTD-IMPROV-S01H-M01-T-MF01.avi; H; A:4.000000; V:4.500000; D:3.000000 ; N:3.500000;
Rater-1; Happy; Excited; A:4.000000; V:4.500000; D:3.000000; N:3.500000;

UTD-IMPROV-S02S-F02-R-FM02.avi; S; A:2.000000; V:1.500000; D:2.000000 ; N:4.000000;
Rater-1; Sad; ; A:2.000000; V:1.500000; D:2.000000; N:4.000000;

UTD-IMPROV-S03A-M06-S-MF06.avi; A; A:4.500000; V:1.500000; D:4.000000 ; N:4.000000;
Rater-1; Angry; ; A:4.500000; V:1.500000; D:4.000000; N:4.000000;

UTD-IMPROV-S04N-F03-P-FM03.avi; X; A:3.000000; V:3.000000; D:3.000000 ; N:NaN;
Rater-1; Other; Confused; A:3.000000; V:3.000000; D:3.000000; N:NaN;

UTD-IMPROV-S05N-M03-P-MF03.avi; O; A:3.000000; V:3.000000; D:3.000000 ; N:3.000000;
"""


def _msp_tree(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Evalution.txt").write_text(MSP_EVAL)
    for name in ("S01A-F01-P-FM01", "S01H-M01-T-MF01", "S02S-F02-R-FM02", "S03A-M06-S-MF06"):
        sess = int(name.split("-")[1][1:])
        sub = f"{name.split('-')[0]}/{name.split('-')[2]}"
        (root / "Audio" / f"session{sess}" / sub).mkdir(parents=True, exist_ok=True)
        (root / "Audio" / f"session{sess}" / sub / f"MSP-IMPROV-{name}.wav").write_bytes(b"RIFF")
        if name != "S03A-M06-S-MF06":
            (root / "Video" / f"session{sess}" / sub).mkdir(parents=True, exist_ok=True)
            (root / "Video" / f"session{sess}" / sub / f"MSP-IMPROV-{name}.avi").write_bytes(b"RIFF")
    return root


def test_msp_improv_listing(tmp_path: Path) -> None:
    utts = list_corpus("msp-improv", _msp_tree(tmp_path))
    assert [u.id for u in utts] == [
        "MSP-IMPROV-S01A-F01-P-FM01",
        "MSP-IMPROV-S01H-M01-T-MF01",
        "MSP-IMPROV-S02S-F02-R-FM02",
        "MSP-IMPROV-S03A-M06-S-MF06",
    ]
    assert [u.label for u in utts] == ["neu", "hap", "sad", "ang"]  # consensus label, not the acted one
    assert [u.group for u in utts] == ["session1", "session1", "session2", "session6"]
    assert [u.speaker for u in utts] == ["F01", "M01", "F02", "M06"]
    assert utts[0].extra["acted"] == "A" and utts[0].extra["scenario"] == "P"
    assert utts[0].audio_path is not None and utts[0].audio_path.suffix == ".wav"
    assert utts[0].video_path is not None and utts[0].video_path.parts[-5] == "Video"
    assert utts[3].video_path is None and utts[3].transcript is None


def test_msp_improv_scenario_filter_and_alt_name(tmp_path: Path) -> None:
    from training.data.corpora.msp_improv import list_msp_improv

    root = _msp_tree(tmp_path)
    (root / "Evalution.txt").rename(root / "Evaluation.txt")
    kept = list_msp_improv(root, scenarios=("S", "P"))
    assert [u.extra["scenario"] for u in kept] == ["P", "S"]


def test_files_listing_on_bundled_cremad() -> None:
    root = REPO / "data" / "cremad"
    utts = list_corpus("files", root)
    assert len(utts) == 12  # actor 1001's six flv clips and actor 1002's six mp3 clips
    by_id = {u.id: u for u in utts}
    assert by_id["1002_DFA_SAD_XX"].video_path is None and by_id["1002_DFA_SAD_XX"].label == "sad"
    ang = by_id["1001_DFA_ANG_XX"]
    assert ang.label == "ang" and by_id["1001_DFA_DIS_XX"].label == "dis"
    assert ang.video_path is not None and ang.video_path.suffix == ".flv"
    # The 16 kHz wav is preferred over the flv's audio track.
    assert ang.audio_path is not None and ang.audio_path.suffix == ".wav"
    assert ang.transcript == "Don't forget a jacket"
    assert class_counts(utts) == {"ang": 2, "dis": 2, "fea": 2, "hap": 2, "neu": 2, "sad": 2}


def test_files_video_only_uses_its_audio_track(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.wav").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("name,label,speaker\na,Excited,spk1\n")
    utts = {u.id: u for u in list_corpus("files", tmp_path)}
    assert utts["a"].audio_path == utts["a"].video_path == tmp_path / "a.mp4"
    assert utts["a"].label == "hap" and utts["a"].speaker == "spk1" and utts["a"].group == "spk1"
    assert utts["b"].video_path is None and utts["b"].label is None


def test_unknown_kind_and_labels() -> None:
    with pytest.raises(ValueError, match="unknown corpus kind"):
        list_corpus("mosei", ".")
    assert (
        normalise_label("Anger") == "ang" and normalise_label(" ") is None and normalise_label("xyz") == "xyz"
    )
