"""End-to-end extraction of the bundled CREMA-D clips into a feature store, for both profiles."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from models.encoders.audio import load_audio
from models.encoders.profile import build_extractors, profile_mismatches
from tests.encoders.media import CREMAD, LABELS, clip, offline_extractors, read_frames, wav, write_clip
from training.data.corpus import Utterance, list_corpus
from training.data.extract import extract_corpus, main, store_manifest
from training.data.feature_store import FeatureStore


@pytest.fixture(scope="module")
def cremad_root(tmp_path_factory):
    """The six clips as a 'files' corpus: flv video + the 16 kHz wav of the same stem + csvs."""
    root = tmp_path_factory.mktemp("cremad")
    for lab in LABELS:
        shutil.copy(clip(lab), root / clip(lab).name)
        shutil.copy(wav(lab), root / wav(lab).name)
    shutil.copy(CREMAD / "labels.csv", root / "labels.csv")
    shutil.copy(CREMAD / "transcripts.csv", root / "transcripts.csv")
    return root


def test_offline_profile_extracts_all_clips_and_resumes(cremad_root, tmp_path, capsys):
    out = tmp_path / "store"
    argv = [
        "--corpus",
        "files",
        "--root",
        str(cremad_root),
        "--out",
        str(out),
        "--extractors",
        "offline",
        "--no-progress",
    ]
    assert main(argv) == 0
    store = FeatureStore(out)
    assert len(store) == 6
    assert store.dims == {"text": 384, "audio": 384, "video": 135}
    assert store.manifest["frame_rates"] == {"text": None, "audio": 50.0, "video": 10.0}
    assert [c["kind"] for c in store.manifest["corpora"]] == ["files"]
    current = build_extractors("offline").describe()
    assert profile_mismatches(store.manifest["extractors"], current) == []
    labels = sorted(store.meta(i)["label"] for i in store.ids())
    assert labels == ["ang", "dis", "fea", "hap", "neu", "sad"]
    for uid in store.ids():
        u = store.get(uid)
        lab = uid.split("_")[2]
        n = len(sf.read(wav(lab))[0])
        assert u.features["audio"].shape == (-(-n // 320), 384)  # Whisper encoder states, 50 Hz
        assert u.features["text"].shape == (8, 384) and u.presence["text"].all()  # [CLS] 6 tokens [SEP]
        frames = len(read_frames(clip(lab))[0])
        assert abs(u.features["video"].shape[0] - frames / 3) <= 1  # 29.97 fps clip sampled at 10 fps
        assert u.features["video"].shape[1] == 135
        assert u.presence["video"].mean() >= 0.9
        assert u.meta["transcript_source"] == "corpus" and u.meta["speaker"] and u.meta["group"]
        assert u.features["video"][u.presence["video"]].any(axis=1).all()
    # Rerun: everything is already there.
    capsys.readouterr()
    assert main(argv) == 0
    assert "0 added, 6 already stored" in capsys.readouterr().out
    assert len(FeatureStore(out)) == 6
    # A different profile must not be mixed into the same store.
    with pytest.raises(ValueError, match="different manifest"):
        main([*argv, "--set", "face.margin=0.3"])


def test_presence_flags_for_stripped_audio_black_frames_and_audio_only(tmp_path):
    frames, rate = read_frames(clip("HAP"))
    audio = load_audio(clip("HAP"))
    blacked = [np.zeros_like(f) if 20 <= i < 40 else f for i, f in enumerate(frames)]
    write_clip(tmp_path / "noaudio.mkv", frames, rate, audio=None)
    write_clip(tmp_path / "blacked.mkv", blacked, rate, audio=audio)
    shutil.copy(wav("ANG"), tmp_path / "audioonly.wav")
    utts = list_corpus("files", tmp_path)
    assert [u.id for u in utts] == ["audioonly", "blacked", "noaudio"]
    ex = offline_extractors("face.fps=30")  # every frame of the 30 fps clip
    out = tmp_path / "store"
    s = extract_corpus(utts, ex, out, store_manifest(ex, "files", tmp_path, "auto"), progress=False)
    assert s.added == 3 and not s.failed
    store = FeatureStore(out)

    no_audio = store.get("noaudio")
    assert no_audio.features["audio"].shape == (0, 384)  # stripped audio: missing modality
    assert no_audio.features["text"].shape == (0, 384)  # no transcript and nothing to transcribe
    assert no_audio.features["video"].shape == (len(frames), 135) and no_audio.presence["video"].mean() >= 0.9

    black = store.get("blacked")
    p = black.presence["video"]
    assert not p[20:40].any()  # blacked-out frames: no face
    assert np.all(black.features["video"][20:40] == 0)
    assert np.concatenate([p[:20], p[40:]]).mean() >= 0.9
    assert black.features["audio"].shape[0] == -(-len(audio) // 320)
    assert black.meta["transcript_source"] == "asr" and "forget" in black.meta["transcript"].lower()

    audio_only = store.get("audioonly")
    assert audio_only.features["video"].shape == (0, 135) and audio_only.meta["video_frames"] == 0
    assert "jacket" in audio_only.meta["transcript"].lower()
    assert audio_only.features["text"].shape[0] >= 4


def test_paper_profile_architecture_extracts_the_clips(cremad_root, tmp_path):
    # No BERT-base / wav2vec2-base / DenseFace weights offline: the paper architectures with random
    # weights (recorded as such in the manifest) exercise the same pipeline and output widths.
    overrides = [
        "text.init=random",
        "text.config_overrides={num_hidden_layers: 1}",
        "speech.wav2vec2.init=random",
        "speech.wav2vec2.config_overrides={num_hidden_layers: 1, intermediate_size: 256, "
        "conv_dim: [32, 32, 32, 32, 32, 32, 32], num_conv_pos_embeddings: 16}",
        "face.init=random",
        "face.fps=1",
    ]
    out = tmp_path / "paper"
    argv = [
        "--corpus",
        "files",
        "--root",
        str(cremad_root),
        "--out",
        str(out),
        "--extractors",
        "paper",
        "--no-progress",
    ]
    for o in overrides:
        argv += ["--set", o]
    assert main(argv) == 0
    store = FeatureStore(out)
    assert len(store) == 6
    assert store.dims == {"text": 768, "audio": 768, "video": 342}
    ident = store.manifest["extractors"]["identity"]
    assert ident["text"]["init"] == "random" and ident["face"]["weights"].startswith("random")
    for u in store:
        n = len(sf.read(wav(u.id.split("_")[2]))[0])
        assert u.features["text"].shape[1] == 768
        assert abs(u.features["audio"].shape[0] - n / 320) <= 1.5  # ~50 Hz
        assert abs(u.features["video"].shape[0] - n / 16000) <= 1.5  # 1 fps
        assert u.presence["video"].mean() >= 0.8


def test_dialogue_video_span_applies_to_video_not_to_an_utterance_wav(tmp_path):
    # IEMOCAP layout: a per-utterance wav plus the whole dialogue's video with the utterance's span.
    frames, rate = read_frames(clip("NEU"))
    dialogue = [np.zeros_like(frames[0])] * 30 + frames + [np.zeros_like(frames[0])] * 30
    write_clip(tmp_path / "dialog.mkv", dialogue, rate, audio=None)
    start, end = 30 / rate, (30 + len(frames)) / rate
    utt = Utterance(
        "u1",
        "neu",
        "spk",
        "Session1",
        wav("NEU"),
        tmp_path / "dialog.mkv",
        "Don't forget a jacket",
        start=start,
        end=end,
    )
    ex = offline_extractors("face.fps=30")  # every frame of the 30 fps clip
    s = extract_corpus(
        [utt], ex, tmp_path / "s", store_manifest(ex, "iemocap", tmp_path, "corpus"), "corpus", progress=False
    )
    assert s.added == 1
    u = FeatureStore(tmp_path / "s").get("u1")
    n = len(sf.read(wav("NEU"))[0])
    assert u.features["audio"].shape[0] == -(-n // 320)  # the whole utterance wav, not cut
    assert abs(len(u.presence["video"]) - len(frames)) <= 1  # only the span's frames
    assert u.presence["video"].mean() >= 0.9  # the black dialogue padding is outside the span


def test_unknown_profile_and_empty_corpus(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(
            [
                "--corpus",
                "files",
                "--root",
                str(tmp_path),
                "--out",
                str(tmp_path / "s"),
                "--extractors",
                "nope",
            ]
        )
    assert (
        main(["--corpus", "files", "--root", str(tmp_path), "--out", str(tmp_path / "s"), "--no-progress"])
        == 2
    )


def test_a_broken_file_is_reported_not_fatal(tmp_path):
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav")
    shutil.copy(wav("NEU"), tmp_path / "good.wav")
    ex = offline_extractors()
    utts = list_corpus("files", tmp_path)
    s = extract_corpus(
        utts, ex, tmp_path / "s", store_manifest(ex, "files", tmp_path, "corpus"), "corpus", progress=False
    )
    assert s.failed == ["broken"] and s.added == 1
    assert FeatureStore(tmp_path / "s").ids() == ["good"]
    assert isinstance(utts[0], Utterance)
