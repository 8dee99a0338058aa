"""Multi-corpus training on real data: a small store extracted with the engine's own extractors from real
RAVDESS, MELD, FER2013 and CREMA-D samples, then speaker-independent splits, face pairing, natural-condition
evaluation, calibration and the expert heads of a short real training run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from models.checkpoint import load_checkpoint
from models.fusion_meta import FusionMeta
from tests.conftest import TINY, TRAIN_CONFIG

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CLASSES = ("ang", "hap", "neu", "sad")


def _pick(utts: list, per: int, key) -> list:  # noqa: ANN001 - small selection helper
    """``per`` utterances for every (key, label) pair, in listing order."""
    seen: Counter = Counter()
    out = []
    for u in utts:
        k = (key(u), u.label)
        if u.label in CLASSES and seen[k] < per:
            seen[k] += 1
            out.append(u)
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not DATA.is_dir():
        pytest.skip("the real corpus copies (shared/data next to the repository) are not on this machine")
    from tests.encoders.media import offline_extractors
    from training.data.corpus import list_corpus
    from training.data.extract import extract_corpus, store_manifest

    out = tmp_path_factory.mktemp("multi") / "store"
    ex = offline_extractors()
    ravdess = [
        u
        for u in list_corpus("ravdess", DATA / "ravdess-speech")
        if u.speaker in ("ravdess:01", "ravdess:02", "ravdess:03")
    ]
    picks = {
        "ravdess": _pick(ravdess, 1, lambda u: u.speaker),  # 3 actors x 4 classes
        "meld": _pick(list_corpus("meld", DATA / "meld-text"), 2, lambda u: u.split),
        "fer2013": _pick(list_corpus("fer2013", DATA / "fer2013-4class.npz"), 2, lambda u: u.split),
        "cremad": [
            u
            for u in list_corpus("cremad", DATA / "cremad-clips")
            if u.id.endswith(("1001_DFA_ANG_XX", "1001_DFA_SAD_XX"))
        ],
    }
    for kind, utts in picks.items():
        s = extract_corpus(utts, ex, out, store_manifest(ex, kind, DATA, "auto"), progress=False, views=3)
        assert s.added == len(utts) and not s.failed
    return out


def _splits(store: Path, *overrides: str):  # noqa: ANN202
    from training.data.sources import load_splits
    from training.loop.train import load_train_config

    cfg = load_train_config(TRAIN_CONFIG, ["data.val_fraction=0.34", *overrides], root=str(store))
    return cfg, load_splits(cfg.data)


def test_store_keeps_each_samples_own_modalities(store: Path) -> None:
    from training.data.feature_store import FeatureStore

    fs = FeatureStore(store)
    assert [c["kind"] for c in fs.manifest["corpora"]] == ["ravdess", "meld", "fer2013", "cremad"]
    have = {fs.meta(u)["corpus"]: {m for m, n in fs.lengths(u).items() if n} for u in fs.ids()}
    assert have == {
        "ravdess": {"text", "audio"},
        "meld": {"text"},
        "fer2013": {"video"},
        "cremad": {"text", "audio", "video"},
    }
    rav = [u for u in fs.ids() if u.startswith("ravdess:")]
    assert all(fs.meta(u)["transcript_source"] == "asr" for u in rav)  # the engine's ASR, not corpus text
    fer = fs.get(next(u for u in fs.ids() if u.startswith("fer2013:")))
    assert fer.features["video"].shape == (3, 135) and fer.presence["video"].any()  # 3 views, face path


def test_splits_are_speaker_independent_and_keep_official_splits(store: Path) -> None:
    _, sp = _splits(store)
    side = {}
    for name in ("train", "val", "test"):
        for s in getattr(sp, name):
            side.setdefault(s.speaker, set()).add(name)
            if s.corpus == "cremad":
                assert name == "test"  # evaluation only
            if s.corpus == "meld":
                assert (
                    name == {"train": "train", "val": "val", "test": "test"}[s.id.split(":")[1].split("_")[0]]
                )
    rav = {k: v for k, v in side.items() if k.startswith("ravdess:")}
    assert all(len(v) == 1 for v in rav.values()) and {"train"} in rav.values() and {"val"} in rav.values()
    _, held = _splits(store, 'data.test_speakers=["ravdess:02"]')
    assert {s.speaker for s in held.test if s.corpus == "ravdess"} == {"ravdess:02"}
    w = np.asarray(sp.train_weights)
    for corpus in {s.corpus for s in sp.train}:  # every class of a corpus drawn equally often
        per_class = Counter()
        for s, wi in zip(sp.train, w, strict=True):
            if s.corpus == corpus:
                per_class[s.label] += wi
        assert np.allclose(list(per_class.values()), list(per_class.values())[0])


def test_face_pairing_gives_speech_a_same_label_face(store: Path) -> None:
    from training.data.dataset import FeatureDataset
    from training.data.multicorpus import FacePairing, face_samples

    _, sp = _splits(store)
    pairing = FacePairing(face_samples(sp.train), 1.0, seed=0)
    speech = [s for s in sp.train if FacePairing.eligible(s)]
    assert speech and all(pairing.partner(s, i, 0).label == s.label for i, s in enumerate(speech))
    ds = FeatureDataset(speech, sp.dims, transform=pairing)
    item = ds[0]
    assert item["present"].tolist() == [1.0, 1.0, 1.0]  # text, audio and now a face
    partners = {pairing.partner(speech[0], 0, e).id for e in range(12)}
    assert len(partners) > 1  # re-drawn every epoch
    assert pairing.partner(speech[0], 0, 3).id == pairing.partner(speech[0], 0, 3).id  # deterministic
    off = FeatureDataset(speech, sp.dims, transform=FacePairing(face_samples(sp.train), 0.0, seed=0))
    assert off[0]["present"].tolist() == [1.0, 1.0, 0.0]


def test_short_training_writes_calibrated_checkpoint_with_experts_and_reports(
    store: Path, tmp_path: Path
) -> None:
    from training.fit.expert_weights import condition_row
    from training.loop.train import load_train_config, train

    over = [o for o in TINY if not o.startswith(("data.corpora", "data.eval_only", "data.val_fraction"))]
    cfg = load_train_config(
        TRAIN_CONFIG, [*over, "data.val_fraction=0.34", "data.epoch_size=32"], root=str(store)
    )
    res = train(cfg, tmp_path / "run", device="cpu")
    meta = FusionMeta.from_extra(load_checkpoint(res.best_checkpoint).extra)
    assert meta.temperature > 0 and set(meta.experts) == {"speech", "text"}
    assert meta.experts["speech"].modality == "audio" and meta.experts["speech"].weight.shape == (4, 2 * 384)
    rep = res.test_report
    assert rep is not None
    entries = rep["entries"]
    # Each corpus under the conditions it can have; the CREMA-D clips under all seven.
    assert {"meld.t", "fer2013.v", "cremad.tav", "cremad.v", "cremad.ta"} <= set(entries)
    gates = load_checkpoint(res.best_checkpoint).model.deep_gate
    cal = res.calibration["calibration"]
    assert cal["deep_gates"] and set(cal["attention_uar_gain"]) <= set(cal["deep_gates"])
    assert 0.0 <= float(gates.min()) <= float(gates.max()) <= 1.0
    for cond, g in cal["deep_gates"].items():  # the attention path counts only where it beat the experts
        row = sum(w for m, w in zip("tav", (4, 2, 1), strict=True) if m in cond)
        assert abs(float(gates[row]) - g) < 1e-4
        if cal["attention_uar_gain"].get(cond, -1.0) < cal["attention_min_gain"]:  # unmeasured: off
            assert g == 0.0
    assert cal["attention_min_gain"] == cfg.attention_min_gain > 0
    # Expert weights refitted on validation per set: non-negative, only for available modalities, and
    # what the checkpoint's gate table now holds.
    assert cfg.refit_expert_weights and cal["expert_weights"]
    skip_gate = load_checkpoint(res.best_checkpoint).model.skip_gate.detach()
    for cond, ws in cal["expert_weights"].items():
        assert set(ws) == {m for m in ("text", "audio", "video") if m[0] in cond}
        for j, m in enumerate(("text", "audio", "video")):
            if m in ws:
                assert 0.0 <= ws[m] and abs(float(skip_gate[condition_row(cond), j]) - ws[m]) < 1e-4
    # The product rule (the recipe's default): the prior correction of the chosen prior in the graph,
    # both priors scored on validation, and the attention path's residual kept only on sets with real
    # validation samples: av and tav exist here only as synthetic face pairs, tv not at all -> 0.
    from training.fit.product_rule import prior_bias_table

    ck = load_checkpoint(res.best_checkpoint)
    assert meta.fusion_rule == "product" == ck.model.fusion_rule == ck.config.fusion_rule
    rules = cal["rules"]
    prior = rules["product"]["prior"]
    assert prior["asked"] == cfg.product_prior and prior["chosen"] in ("train", "uniform")
    assert {"train", "uniform"} <= set(prior)
    priors = {m: np.asarray(v) for m, v in prior["priors"].items()}
    assert np.allclose(priors["video"].sum(), 1.0) and not np.allclose(priors["video"], 0.25)  # FER balance
    assert np.allclose(priors["audio"], 0.25) and np.allclose(priors["text"], 0.25)  # balanced heads
    table = prior_bias_table(priors, 4, prior["chosen"], ck.model.product_gate.numpy())
    assert np.allclose(ck.model.prior_bias.numpy(), table, atol=1e-5)
    pgate = ck.model.product_deep_gate
    for cond in ("tv", "av", "tav"):
        assert rules["product"]["deep_gates"][cond] == 0.0 == float(pgate[condition_row(cond)])
    face_t = res.calibration["experts"]["face"]["temperature"]
    assert 0.0 < meta.face_temperature == face_t
    # Each expert's calibration on its own validation data, and the fused ECE of every entry.
    assert {e["expert"] for e in cal["experts"].values()} <= {"speech", "text", "face"}
    assert all(0.0 <= e["ece"] <= 1.0 for e in cal["experts"].values()) and cal["fused_val_ece"]
    # each ECE comes with what a calibrated model reads at the same size
    for e in [*cal["experts"].values(), *cal["fused_val_ece"].values()]:
        assert 0.0 <= e["ece_floor"] <= e["ece_floor_p95"] <= 1.0 and 0.0 <= e["p_calibrated"] <= 1.0
    # Every test entry is scored under both rules; the default rule's figures are the entry's own.
    for e in entries.values():
        assert set(e["rules"]) == {"product", "learned"} and e["rules"]["product"]["uar"] == e["uar"]
    assert "ravdess.ta" in entries or "ravdess.ta" in res.val_report["entries"]
    cr = entries["cremad.tav"]
    assert set(cr["experts"]) == {"speech", "text", "face"} and "fused_minus_best_expert_uar" in cr
    assert set(entries["fer2013.v"]["experts"]) == {"face"} and set(entries["meld.t"]["experts"]) == {"text"}
    for e in entries.values():
        assert 0.0 <= e["ece_before"] <= 1.0 and 0.0 <= e["ece_after"] <= 1.0
    paired = [k for k in res.val_report["entries"] if "+face" in k]
    assert paired, res.val_report["entries"].keys()  # speech paired with held-out faces is scored too
    # The trained graph, experts and gates included, exports to one ONNX graph that matches torch for
    # every availability set, also on inputs far from the training data (no blown-up expert weights).
    from models.export import export_onnx, verify_onnx

    model = load_checkpoint(res.best_checkpoint).model.eval()
    report = verify_onnx(model, export_onnx(model, tmp_path / "m.onnx"), lengths=(1, 9), batches=(2,))
    assert report["passed"], report["max_abs_diff"]
    # Resuming the finished run trains nothing more and finalizes it again to the same result (what
    # `training.recipe.reproduce --refinalize` relies on): gates, expert weights, temperature.
    epochs = len(json.loads((tmp_path / "run" / "history.json").read_text()))
    again = train(cfg, tmp_path / "run", resume=True, device="cpu")
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == epochs
    assert again.best_epoch == res.best_epoch
    cal2 = again.calibration["calibration"]
    assert cal2["deep_gates"] == cal["deep_gates"]
    for cond, ws in cal["expert_weights"].items():
        for m, w in ws.items():
            assert abs(cal2["expert_weights"][cond][m] - w) < 1e-2 * max(1.0, w)
    assert abs(cal2["temperature"] - cal["temperature"]) < 1e-2 * cal["temperature"]


def test_training_starts_from_the_product_of_the_calibrated_experts(store: Path) -> None:
    """skip_init=experts: before any step, the fused logits under one modality are that modality's
    calibrated expert's logits, and under several the sum of theirs."""
    import torch

    from training.data.dataset import FeatureDataset, Normalizer, collate
    from training.fit.experts import fit_experts, init_skip_from_experts
    from training.loop.train import build_model, logprob_tail

    cfg, sp = _splits(store)
    assert logprob_tail(sp) == (0, 0, 7)  # the face model's 7 log-probabilities end every video frame
    norm = Normalizer.fit(sp.train, sp.dims, raw_tail={"video": 7})
    adapter, model, _ = build_model(cfg, sp)
    assert model.config.logprob_tail == (0, 0, 7)
    experts = fit_experts(sp.train + sp.val, sp.val + sp.train, sp.dims, sp.class_names)
    assert {"speech", "text", "face"} <= set(experts)
    init_skip_from_experts(model, experts, norm)
    assert not any(p.requires_grad for p in model.skip.parameters())  # the experts stay as fitted
    model.eval()
    cremad = [s for s in sp.test if s.corpus == "cremad"]
    batch = collate([FeatureDataset(cremad, sp.dims, norm)[i] for i in range(len(cremad))])
    loaded = [s.load() for s in cremad]
    raw = [{m: feats[m][valid[m]] for m in ("text", "audio", "video")} for feats, valid in loaded]

    def expert(name: str, i: int) -> np.ndarray:
        h = experts[name].head
        x = raw[i][h.modality]
        if name == "face":  # the face model's own reading: log of its mean probability over the frames
            from training.fit.experts import face_expert_probs

            p = face_expert_probs(x, np.ones(len(x), bool), sp.class_names)
            probs = np.exp(x[:, -7:]).mean(0)[[0, 3, 6, 4]]  # angry, happy, neutral, sad
            assert np.allclose(p, probs / probs.sum(), atol=1e-5)
            return np.log(probs) / h.temperature  # calibrated on validation windows of face frames
        return h.logits(h.pool_features(x, h.pool)[None])[0] / h.temperature

    for avail, names in (
        ((0.0, 1.0, 0.0), ["speech"]),
        ((0.0, 0.0, 1.0), ["face"]),
        ((1.0, 1.0, 1.0), ["text", "speech", "face"]),
    ):
        batch["avail"] = torch.tensor([avail] * len(cremad))
        with torch.no_grad():
            got = adapter.logits(adapter.forward(model, batch)).numpy()
        want = np.stack([sum(expert(n, i) for n in names) for i in range(len(cremad))])
        assert np.allclose(got, want, atol=2e-3), (avail, got, want)


def test_speech_calibration_reads_every_speaker_once_by_a_head_that_never_heard_them(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """training.evaluation.speech_calibration on the real store: each RAVDESS utterance is read once, out
    of fold;
    a temperature never changes a prediction; the temperature fitted on the readings themselves has the
    lower NLL on them than none; a path without a store fails in one line."""
    from training.evaluation.speech_calibration import main

    assert main(["--store", str(tmp_path / "none")]) == 2
    assert "not a feature store" in capsys.readouterr().err
    out = tmp_path / "cal.json"
    assert main(["--store", str(store), "--folds", "3", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    oof = rep["out_of_fold"]
    assert [f["n"] for f in oof["folds"]] == [4, 4, 4]  # 3 actors x 4 classes, each actor tested once
    assert all(f["t_val"] > 0 and f["t_pooled"] > 0 for f in oof["folds"])
    rav = oof["ravdess"]
    assert rav["none"]["n"] == 12 and oof["all"]["none"]["n"] == 12 and "emodb" not in oof
    assert rav["none"]["uar"] == rav["val"]["uar"] == rav["pooled"]["uar"]  # T keeps the argmax
    assert rav["pooled_on_itself"]["nll"] <= rav["none"]["nll"] + 1e-6  # the one T that fits them best
    assert all(0.0 <= rav[k]["ece"] <= 1.0 and rav[k]["ece_floor"] > 0 for k in ("none", "val", "pooled"))
    cremad = rep["across_corpora"]["recipe->cremad (test only)"]
    assert cremad["val"]["n"] == 2  # the two CREMA-D clips of the store, read but never fitted on
    from training.recipe.card_fusion import speech_calibration_section

    card = "\n".join(speech_calibration_section({"speech_calibration": rep}))  # what reproduce writes
    row = f"| out of fold, ravdess | 12 | {100 * rav['val']['uar']:.1f} | {rav['none']['ece']:.3f} | "
    assert row + f"{rav['val']['ece']:.3f} |" in card and "| recipe->cremad (test only) | 2 |" in card
