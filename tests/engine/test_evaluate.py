"""python -m engine.evaluate on real CREMA-D clips: the live engine replays every file (--fast), models
are loaded once, unreadable files are listed with their error, and bad input exits with status 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.core import loading
from engine.tools import clip_evaluation as evaluate
from tests.engine.media import CREMAD

ANG = CREMAD / "1001_DFA_ANG_XX.flv"
HAP_WAV = CREMAD / "wav16k" / "1001_DFA_HAP_XX.wav"
DIS_WAV = CREMAD / "wav16k" / "1001_DFA_DIS_XX.wav"
NEU = CREMAD / "1001_DFA_NEU_XX.flv"
NEU_WAV = CREMAD / "wav16k" / "1001_DFA_NEU_XX.wav"
SAD = CREMAD / "1001_DFA_SAD_XX.flv"
FAST_TORCH = ["--fast", "--set", "backend.name=torch"]


class Proxy:
    """The session's real extractors; closing is left to the session fixture."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _labels(root: Path, rows: dict[str, str]) -> None:
    lines = ["name,label", *(f"{k},{v}" for k, v in rows.items())]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two readable clips (a video with its audio, an audio-only wav in a sub-folder), a clip whose label
    the model does not have, two unreadable files and an unlabelled file."""
    root = tmp_path / "clips"
    (root / "audio").mkdir(parents=True)
    shutil.copy(ANG, root / ANG.name)
    shutil.copy(HAP_WAV, root / "audio" / HAP_WAV.name)
    shutil.copy(DIS_WAV, root / "audio" / DIS_WAV.name)
    (root / SAD.name).write_bytes(SAD.read_bytes()[:400])  # a real clip cut to its first 400 bytes
    (root / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    shutil.copy(NEU_WAV, root / "audio" / "unlabelled.wav")
    _labels(
        root,
        {
            "1001_DFA_ANG_XX": "angry",
            "1001_DFA_HAP_XX": "HAP",
            "1001_DFA_DIS_XX": "disgust",
            "1001_DFA_SAD_XX": "sadness",
            "notes": "neutral",
            "not_on_disk": "neu",
        },
    )
    return root


def test_evaluate_replays_every_clip_through_the_engine(
    folder: Path, tmp_path: Path, extractors: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    calls: dict[str, int] = {"extractors": 0, "fusion": 0, "backend": 0}
    loaded: list[Any] = []
    real_fusion, real_backend = loading.load_fusion_model, loading.build_backend

    def count_extractors(cfg: Any) -> Proxy:
        calls["extractors"] += 1
        return Proxy(extractors)

    def count_fusion(*a: Any) -> Any:
        calls["fusion"] += 1
        loaded.append(real_fusion(*a))
        return loaded[-1]

    def count_backend(*a: Any) -> Any:
        calls["backend"] += 1
        return real_backend(*a)

    # every load goes through engine.core.loading: a clip's engine that loaded its own models would count
    monkeypatch.setattr(loading, "load_extractors", count_extractors)
    monkeypatch.setattr(loading, "load_fusion_model", count_fusion)
    monkeypatch.setattr(loading, "build_backend", count_backend)

    out = tmp_path / "report" / "eval.json"
    rc = evaluate.main(["--root", str(folder), "--json", str(out), *FAST_TORCH])
    assert rc == 0
    assert calls == {"extractors": 1, "fusion": 1, "backend": 1}
    report = json.loads(out.read_text())
    fm = loaded[0]
    assert report["model"] == fm.identity and report["trained"] == fm.trained
    assert report["class_names"] == list(fm.class_names) == ["ang", "hap", "neu", "sad"]
    assert report["config"] == ["backend.name=torch"] and "argmax" in report["rule"]
    assert report["skipped"] == ["unlabelled"] and report["labels_without_media"] == 1

    clips = {c["name"]: c for c in report["clips"]}
    assert list(clips) == sorted(clips) and len(clips) == 5
    video, audio, other = clips["1001_DFA_ANG_XX"], clips["1001_DFA_HAP_XX"], clips["1001_DFA_DIS_XX"]
    for c in (video, audio, other):
        assert c["error"] is None and c["events"] >= 2 and c["seconds"] > 0, c
        assert abs(sum(c["probs"].values()) - 1) < 1e-5
        assert c["pred"] == max(c["probs"], key=c["probs"].get)
    assert video["label"] == "ang" and video["condition"] == "tav" and video["counted"]
    assert audio["label"] == "hap" and audio["counted"]
    assert "a" in audio["condition"] and "v" not in audio["condition"]  # audio only: "ta" or "a"
    assert other["label"] == "dis" and not other["counted"]  # a real prediction, but no such class
    for name in ("1001_DFA_SAD_XX", "notes"):
        bad = clips[name]
        assert bad["error"] and bad["pred"] is None and bad["probs"] is None and not bad["counted"], bad
        assert bad["condition"] == ""
    assert "cannot open notes.mp4" in clips["notes"]["error"]

    assert report["overall"]["n"] == 2
    right = sum(c["pred"] == c["label"] for c in (video, audio))
    assert report["overall"]["war"] == pytest.approx(right / 2)
    assert {k: v["n"] for k, v in report["by_condition"].items()} == {
        video["condition"]: 1,
        audio["condition"]: 1,
    }
    conf = report["confusion"]
    assert conf["labels"] == report["class_names"]
    assert len(conf["matrix"]) == 4 and all(len(row) == 4 for row in conf["matrix"])
    assert conf["matrix"][0][report["class_names"].index(video["pred"])] == 1
    assert sum(map(sum, conf["matrix"])) == 2 and conf["no_prediction"] == [0, 0, 0, 0]

    err = capsys.readouterr().err
    assert "overall: WAR" in err and "n=2" in err
    assert ("UNTRAINED MODEL" in err) == (not fm.trained)


@pytest.mark.parametrize("tracks", ["video", "audio"])
def test_one_track_of_audio_visual_clips(tmp_path: Path, extractors: Any, monkeypatch: pytest.MonkeyPatch,
                                         tracks: str) -> None:
    """--tracks video scores the face alone through the engine (condition "v", only the face expert reads);
    --tracks audio the voice alone; a file without the asked track is left out."""
    root = tmp_path / "clips"
    root.mkdir()
    shutil.copy(ANG, root / ANG.name)
    shutil.copy(HAP_WAV, root / HAP_WAV.name)
    _labels(root, {"1001_DFA_ANG_XX": "ang", "1001_DFA_HAP_XX": "hap"})
    monkeypatch.setattr(loading, "load_extractors", lambda cfg: Proxy(extractors))
    out = tmp_path / "eval.json"
    assert evaluate.main(["--root", str(root), "--json", str(out), "--tracks", tracks, *FAST_TORCH]) == 0
    report = json.loads(out.read_text())
    clips = {c["name"]: c for c in report["clips"]}
    assert report["tracks"] == tracks
    ang = clips["1001_DFA_ANG_XX"]
    if tracks == "video":
        assert set(clips) == {"1001_DFA_ANG_XX"}  # the audio-only wav has no video to replay
        assert ang["condition"] == "v" and set(ang["experts"]) == {"face"} and ang["pred"]
    else:
        assert set(clips) == {"1001_DFA_ANG_XX", "1001_DFA_HAP_XX"}
        assert "v" not in ang["condition"] and "face" not in ang["experts"] and "speech" in ang["experts"]


def test_list_clips_matches_stems(tmp_path: Path) -> None:
    """A stem with a video and an audio file is the video with its own audio track; labels normalise."""
    shutil.copy(NEU, tmp_path / NEU.name)
    (tmp_path / "wav").mkdir()
    shutil.copy(NEU_WAV, tmp_path / "wav" / NEU_WAV.name)
    shutil.copy(HAP_WAV, tmp_path / "wav" / HAP_WAV.name)
    (tmp_path / "labels.csv").write_text("label,name\nNeutral,1001_DFA_NEU_XX\nexcited,1001_DFA_HAP_XX\n")
    listing = evaluate.list_clips(tmp_path)
    assert [(c.name, c.label, c.path.name, c.audio_only) for c in listing.clips] == [
        ("1001_DFA_HAP_XX", "hap", HAP_WAV.name, True),
        ("1001_DFA_NEU_XX", "neu", NEU.name, False),
    ]
    assert listing.skipped == [] and listing.unmatched_labels == 0


def test_cli_errors(tmp_path: Path, capsys: Any) -> None:
    out = str(tmp_path / "out.json")

    def fails(root: Path, *extra: str) -> str:
        assert evaluate.main(["--root", str(root), "--json", out, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:"), err
        return err[0]

    assert "not a folder" in fails(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "labels.csv" in fails(empty)
    _labels(empty, {"x": "ang"})
    assert "no media" in fails(empty)
    shutil.copy(HAP_WAV, empty / HAP_WAV.name)
    assert "has a label" in fails(empty)  # media, but none of it labelled
    _labels(empty, {"1001_DFA_HAP_XX": "hap"})
    assert "no_such_key" in fails(empty, "--set", "no_such_key=1")
    assert "does-not-exist.yaml" in fails(empty, "--config", "does-not-exist.yaml")
    (empty / "labels.csv").write_text("file,emotion\n1001_DFA_HAP_XX,hap\n")
    assert "name,label" in fails(empty)
    assert evaluate.main(["--json", out]) == 2  # argparse: --root is required
    assert evaluate.main(["--root", str(empty), "--json", out, "--limit", "0"]) == 2
    assert not Path(out).exists()


def test_compare_scores_a_second_model_on_the_same_clips(
    tmp_path: Path, extractors: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """--compare cider and --compare rule=learned: the shipped CIDer, and the shipped CM-ARR under its
    other fusion rule, score the same clips with the same, once-loaded extractors."""
    root = tmp_path / "clips"
    root.mkdir()
    shutil.copy(ANG, root / ANG.name)
    shutil.copy(HAP_WAV, root / HAP_WAV.name)
    _labels(root, {"1001_DFA_ANG_XX": "ang", "1001_DFA_HAP_XX": "hap"})
    loads = []
    monkeypatch.setattr(loading, "load_extractors", lambda cfg: loads.append(cfg) or Proxy(extractors))
    out = tmp_path / "eval.json"
    argv = ["--root", str(root), "--json", str(out), "--compare", "cider", "--compare", "rule=learned"]
    assert evaluate.main([*argv, *FAST_TORCH]) == 0
    assert len(loads) == 1
    report = json.loads(out.read_text())
    comp = report["comparison"]
    first, second, third = comp["models"]
    assert first["model"] == report["model"] and first["model"].startswith("cmarr-offline-v3:")
    assert second["model"].startswith("cider-offline-v1:")
    assert third["model"] == first["model"] + "+learned"  # the same checkpoint, the other rule
    assert first["overall"]["n"] == second["overall"]["n"] == third["overall"]["n"] == 2
    assert [c["name"] for c in comp["clips"]] == ["1001_DFA_ANG_XX", "1001_DFA_HAP_XX"]
    for c in comp["clips"]:
        assert len(c["pred"]) == 3 and all(p in report["class_names"] for p in c["pred"])
    assert comp["clips"][0]["pred"][0] == report["clips"][0]["pred"]
    assert "same clips, same extractors" in capsys.readouterr().err


def test_compare_with_a_missing_checkpoint_fails_before_loading(tmp_path: Path, capsys: Any) -> None:
    root = tmp_path / "clips"
    root.mkdir()
    shutil.copy(HAP_WAV, root / HAP_WAV.name)
    _labels(root, {"1001_DFA_HAP_XX": "hap"})
    argv = ["--root", str(root), "--json", str(tmp_path / "e.json"), "--compare", "nope.safetensors"]
    rc = evaluate.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--compare nope.safetensors" in err[0] and "not found" in err[0]
    argv[-1] = "rule=mean"  # not a fusion rule
    rc = evaluate.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--compare rule=mean" in err[0] and "fusion.rule" in err[0]
