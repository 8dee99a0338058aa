"""Reproduce the shipped model from the labelled corpora: one command, seeded, on 2 CPU cores.

    python -m training.reproduce --data ../shared/data --out runs/offline-v3 [--folds 5] [--ship]
    make train-offline                                   # the same, then ships the result

Steps (each resumable: rerunning skips what is done):

1. **Extract** every corpus with the engine's own offline extractors into one feature store
   (``python -m training.extract``): RAVDESS and EmoDB speech (transcripts from the engine's ASR), MELD
   text, FER2013 faces (stills through the face path), the CREMA-D clips (test only).
2. **Train** CM-ARR with ``configs/train/cmarr_offline.yaml`` (validation: MELD dev, FER2013
   PublicTest, held-out RAVDESS/EmoDB speakers), calibrate it and fit the speech and text expert heads
   on validation.
3. **Ablate** face pairing (``data.pair_faces=0``) on the same split: with and without, measured.
4. **Cross-validate** over speakers: RAVDESS and EmoDB speakers in ``--folds`` leave-speakers-out folds,
   every fold a full training run; each speaker is tested exactly once. On the same folds, the speech
   expert's calibration on every held-out speaker, and across corpora
   (``training.evaluation.speech_calibration``).
5. **Evaluate the live engine** (``engine.evaluate``) on the bundled CREMA-D clips with the new model,
   under its fusion rule and under the other one.
6. **CM-ARR's reconstruction on real pairs**: ``benchmarks.mosi`` on CMU-MOSI when ``--data`` has it.
7. **Write** ``report.json`` and the model card; with ``--ship``, copy the checkpoint and the card into
   ``models/assets/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from training.evaluation.speech_calibration import speech_calibration
from training.loop.train import load_train_config, train
from training.recipe import CONFIG, REPO, speaker_folds
from training.recipe.card import render_card

ASSET = REPO / "models" / "assets" / "cmarr_offline_v3.safetensors"
CARD = REPO / "models" / "assets" / "cmarr_offline_v3.md"
# (corpus kind, path under --data, extract flags)
CORPORA: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("cremad", "cremad-clips", ()),
    ("emodb", "emodb", ("--labels", "ang,hap,neu,sad", "--transcripts", "asr")),
    ("ravdess", "ravdess-speech", ("--labels", "ang,hap,neu,sad,cal", "--transcripts", "asr")),
    ("meld", "meld-text", ("--labels", "ang,hap,neu,sad", "--transcripts", "corpus")),
    ("fer2013", "fer2013-4class.npz", ()),
)
MAKE_TARGETS = {"configs/train/cider_offline.yaml": "make train-cider"}


def extract_all(data: Path, store: Path, progress: bool) -> None:
    from training.data.extract import main as extract

    for kind, rel, flags in CORPORA:
        root = data / rel
        if not root.exists():
            raise FileNotFoundError(
                f"{root} not found: --data must hold {', '.join(r for _, r, _ in CORPORA)}"
            )
        argv = ["--corpus", kind, "--root", str(root), "--out", str(store), *flags]
        if not progress:
            argv.append("--no-progress")
        if extract(argv) != 0:
            raise RuntimeError(f"extraction of {kind} into {store} failed")


def _stored(store: Path) -> int:
    index = store / "index.json"
    return len(json.loads(index.read_text())) if index.is_file() else 0


def run_training(
    store: Path, out: Path, overrides: list[str], refinalize: bool = False, config: Path = CONFIG
) -> dict[str, Any]:
    """One training (resumed where it stopped). A finished one is reused; with ``refinalize`` its
    trained weights are kept and only what follows training (``training.fit.finalize``, reports) runs
    again."""
    done = out / "summary.json"
    before = json.loads(done.read_text()) if done.is_file() else {}
    if before.get("test_report") and not refinalize:
        return before  # finished in an earlier run
    t0 = time.perf_counter()
    cfg = load_train_config(config, overrides, root=str(store))
    res = train(cfg, out, resume=(out / "last_state.pt").is_file())
    summary = json.loads(done.read_text())
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    if before.get("test_report"):  # trained earlier: keep what the training took
        summary["finalize_seconds"] = summary["wall_seconds"]
        summary["wall_seconds"] = before.get("wall_seconds", summary["wall_seconds"])
    done.write_text(json.dumps(summary, indent=1))
    assert res.best_checkpoint.is_file()
    return summary


def aggregate_folds(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Per entry: mean and std of UAR/WAR over folds, and the pooled confusion (every speaker once)."""
    import numpy as np

    from models.metrics import classification_metrics

    keys = sorted({k for r in reports for k in r["entries"]})
    out: dict[str, Any] = {}
    for key in keys:
        rs = [r["entries"][key] for r in reports if key in r["entries"]]
        cm = np.sum([np.asarray(r["confusion"]) for r in rs], axis=0)
        y = np.repeat(np.arange(len(cm)), cm.sum(1))
        pred = np.concatenate([np.repeat(np.arange(len(cm)), row) for row in cm])
        pooled = classification_metrics(y, pred, len(cm))
        out[key] = {
            "folds": len(rs),
            "uar_mean": float(np.mean([r["uar"] for r in rs])),
            "uar_std": float(np.std([r["uar"] for r in rs])),
            "war_mean": float(np.mean([r["war"] for r in rs])),
            "pooled": {"uar": pooled.uar, "war": pooled.war, "n": pooled.n, "confusion": pooled.confusion},
            "rules_uar_mean": {
                rule: float(np.mean([r["rules"][rule]["uar"] for r in rs]))
                for rule in sorted({n for r in rs for n in r.get("rules", {})})
                if all(rule in r.get("rules", {}) for r in rs)
            },
            "experts_uar_mean": {
                name: float(np.mean([r["experts"][name]["uar"] for r in rs if name in r.get("experts", {})]))
                for name in sorted({n for r in rs for n in r.get("experts", {})})
            },
        }
    return out


def evaluate_engine(checkpoint: Path, out: Path, tracks: str = "all", rule: str = "") -> dict[str, Any]:
    """``engine.evaluate`` on the bundled CREMA-D clips: every track, or only the video (the face alone)
    or only the audio (the voice alone) of each file; ``rule``: a fusion rule other than the
    checkpoint's own (``fusion.rule``)."""
    from engine.tools.clip_evaluation import main as evaluate

    path = out / f"engine_cremad_{tracks}{'_' + rule if rule else ''}.json"
    argv = ["--root", str(REPO / "data" / "cremad"), "--json", str(path), "--fast", "--tracks", tracks]
    if rule:
        argv += ["--set", f"fusion.rule={rule}"]
    if evaluate([*argv, "--checkpoint", str(checkpoint)]) != 0:
        raise RuntimeError("engine.evaluate failed")
    return json.loads(path.read_text())


def run_mosi(data: Path, out: Path, seeds: str) -> dict[str, Any]:
    """CM-ARR's reconstruction where real three-modality pairs exist: ``benchmarks.mosi`` on CMU-MOSI
    (its own process: a benchmark, not part of the trainer). Returns its JSON report."""
    import subprocess
    import sys

    path = out / "mosi.json"
    if not path.is_file():
        cmd = [sys.executable, "-m", "benchmarks.mosi", "--data", str(data), "--json", str(path),
               "--seeds", seeds]
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return json.loads(path.read_text())


def fusion_rule_of(checkpoint: Path) -> str:
    """The checkpoint's default fusion rule ("" for a model with one reading)."""
    from models.checkpoint import read_metadata

    return str(read_metadata(checkpoint)["extra"].get("fusion_rule", ""))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m training.reproduce", description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="folder with the corpora (see the docstring)")
    ap.add_argument("--out", default=Path("runs/offline-v3"), type=Path)
    ap.add_argument("--store", default=None, type=Path, help="feature store (default: OUT/features)")
    ap.add_argument("--folds", type=int, default=5, help="leave-speakers-out folds (0: skip)")
    ap.add_argument("--no-ablation", action="store_true", help="skip the run without face pairing")
    ap.add_argument("--ship", action="store_true", help="copy checkpoint and card into models/assets/")
    ap.add_argument("--config", type=Path, default=CONFIG, help="train config (default: the CM-ARR one)")
    ap.add_argument("--asset", default=ASSET.stem,
                    help=f"name of the shipped files in models/assets/ (default {ASSET.stem})")
    ap.add_argument("--refinalize", action="store_true",
                    help="keep finished trainings' weights; redo gates, expert weights, temperature, reports")
    ap.add_argument("--mosi-seeds", default="0,1,2",
                    help="seeds of the CMU-MOSI reconstruction benchmark when DATA has mosi-trimodal/ "
                    "(empty: skip it)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    t0 = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    store = args.store or out / "features"
    timings: dict[str, float] = {}
    t = time.perf_counter()
    before = _stored(store)
    extract_all(args.data, store, not args.no_progress)
    timings["extract_s"] = round(time.perf_counter() - t, 1)
    timings["extracted_utterances"] = _stored(store) - before  # 0: an existing store was resumed
    base = list(args.overrides) + (["progress=false"] if args.no_progress else [])
    config = args.config.resolve()
    asset, card_path = ASSET.with_name(f"{args.asset}.safetensors"), CARD.with_name(f"{args.asset}.md")
    shown = config.relative_to(REPO) if config.is_relative_to(REPO) else config.name
    report: dict[str, Any] = {"config": str(shown), "overrides": base, "store": str(store)}
    if config != CONFIG.resolve():  # another recipe than the shipped CM-ARR's: its own command
        report["command"] = f"python -m training.reproduce --config {shown} --asset {args.asset}"
        report["make"] = MAKE_TARGETS.get(str(shown), "make train-offline")
    _trainings(args, store, base, config, report, timings)
    ckpt = out / "final" / "best.safetensors"
    t = time.perf_counter()
    report.update(_live_engine(ckpt, out))
    timings["engine_eval_s"] = round(time.perf_counter() - t, 1)
    mosi = args.data / "mosi-trimodal"
    if args.mosi_seeds and mosi.is_dir():
        t = time.perf_counter()
        report["mosi"] = run_mosi(mosi, out, args.mosi_seeds)
        timings["mosi_s"] = round(time.perf_counter() - t, 1)
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    trainings = ("train_final_s", "train_no_pairing_s", "cv_s")
    timings["trainings_s"] = round(sum(timings.get(k, 0.0) for k in trainings), 1)
    report["timings"] = timings
    _write(report, ckpt, out, asset, card_path if args.ship else None)
    print(f"report: {out / 'report.json'}; model card: {out / 'model_card.md'}; {timings}")
    return 0


def _trainings(
    args: argparse.Namespace, store: Path, base: list[str], config: Path, report: dict[str, Any],
    timings: dict[str, float],
) -> None:
    """The final model, the face-pairing ablation and the speaker folds (with the speech expert's
    calibration on them). Training times are what each training took when it ran (a resumed run reuses
    finished ones)."""
    out, again = args.out, args.refinalize
    report["final"] = run_training(store, out / "final", base, again, config)
    timings["train_final_s"] = report["final"].get("wall_seconds", 0.0)
    if not args.no_ablation:
        overrides = [*base, "data.pair_faces=0"]
        report["no_pairing"] = run_training(store, out / "no_pairing", overrides, again, config)
        timings["train_no_pairing_s"] = report["no_pairing"].get("wall_seconds", 0.0)
    if not args.folds:
        return
    folds = speaker_folds(store, args.folds)
    fold_summaries = [
        run_training(
            store, out / f"cv_fold{i}", [*base, f"data.test_speakers={json.dumps(spk)}"], again, config
        )
        for i, spk in enumerate(folds)
    ]
    aggregate = aggregate_folds([s["test_report"] for s in fold_summaries])
    report["cv"] = {"folds": folds, "aggregate": aggregate}
    timings["cv_s"] = round(sum(s.get("wall_seconds", 0.0) for s in fold_summaries), 1)
    # The speech expert alone, on the same folds and across corpora (logistic regressions: seconds).
    try:
        report["speech_calibration"] = speech_calibration(store, config, folds)
    except ValueError as e:  # a fold without every class for a head: said in the report, not fatal
        report["speech_calibration"] = {"error": str(e)}


def _live_engine(ckpt: Path, out: Path) -> dict[str, Any]:
    """The live engine on the bundled CREMA-D clips: every track, the video alone, the audio alone, and
    the same under the other fusion rule for the card's comparison."""
    found: dict[str, Any] = {
        "engine_cremad": evaluate_engine(ckpt, out),
        "engine_cremad_video": evaluate_engine(ckpt, out, "video"),
        "engine_cremad_audio": evaluate_engine(ckpt, out, "audio"),
    }
    rule = fusion_rule_of(ckpt)
    if rule:
        other = "learned" if rule == "product" else "product"
        found["engine_other_rule"] = {
            "rule": other,
            **{k: evaluate_engine(ckpt, out, tracks, other)
               for k, tracks in (("all", "all"), ("video", "video"), ("audio", "audio"))},
        }
    return found


def _write(report: dict[str, Any], ckpt: Path, out: Path, asset: Path, card_path: Path | None) -> None:
    """report.json and the model card in OUT; with a card path (``--ship``), the checkpoint and its card
    into models/assets/."""
    (out / "report.json").write_text(json.dumps(report, indent=1))
    card = render_card(report, ckpt, asset.name)
    (out / "model_card.md").write_text(card)
    if card_path is not None:
        asset.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ckpt, asset)
        asset.chmod(0o644)
        card_path.write_text(card)
        print(f"shipped {asset.relative_to(REPO)} and {card_path.relative_to(REPO)}")
