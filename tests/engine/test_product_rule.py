"""The shipped model's fusion rule against its closed form, for every availability set and backend.

The product rule says p(y | x) ~ prior(y) * prod_m [p_m(y | x_m) / prior_m(y)]^w_m over the
available experts, each calibrated, with w_m = 1 unless real paired data fitted less, then the model's
temperature. Here the experts are computed independently of the graph
(the checkpoint's speech and text heads and the face model's window reading, as the engine reports them)
and multiplied in numpy; the engine's fusion stage must give the same probabilities on every backend.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.backends import create_backend
from engine.config import SHIPPED_CHECKPOINT, load_engine_config, resolve_path
from engine.stages.fusion import FusionStage, load_fusion_model
from models.checkpoint import read_metadata
from models.fusion_meta import FusionMeta
from models.modalities import CONDITIONS, MODALITIES
from training.fit.experts import face_expert_probs

TOL = 1e-3  # max |probability difference|: fp32 graph vs float64 closed form
ROW = {c: sum(w for m, w in zip("tav", (4, 2, 1), strict=True) if m in c) for c in CONDITIONS}
NO_REAL_PAIRS = ("tv", "av", "tav")  # sets that only synthetic face pairs score here


def _load(rule: str = "checkpoint", *extra_overrides: str):  # noqa: ANN202
    extra = read_metadata(resolve_path(SHIPPED_CHECKPOINT))["extra"]
    meta = FusionMeta.from_extra(extra)
    cfg = load_engine_config(None, [f"fusion.rule={rule}", *extra_overrides])
    fm = load_fusion_model(cfg, meta.extractor_profile, meta.dims)  # the checkpoint's own profile
    return fm, meta, extra


def _windows(meta: FusionMeta, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Raw feature windows around the training statistics; the face frames end in real log-probabilities."""
    rng = np.random.default_rng(seed)
    stats = meta.stats()
    out = []
    for i in range(n):
        w = {}
        for m, length in zip(MODALITIES, (3 + i, 20 + 7 * i, 5 + 3 * i), strict=True):
            mean, std = stats[m]
            w[m] = (mean + std * rng.standard_normal((length, len(mean)))).astype(np.float32)
        tail = rng.standard_normal((len(w["video"]), 7)) * 2.0
        w["video"][:, -7:] = tail - np.log(np.exp(tail).sum(1, keepdims=True))
        out.append(w)
    return out


def _closed_form(
    meta: FusionMeta, extra: dict, w: dict[str, np.ndarray], cond: str, asked: dict[str, float] | None = None
) -> np.ndarray:
    product = extra["calibration"]["rules"]["product"]
    prior = product["prior"]
    priors = {m: np.asarray(p) for m, p in prior["priors"].items()}
    weights = dict(product["expert_weights"]["weights"][cond])  # 1 unless real paired data fitted less
    for m, weight in (asked or {}).items():  # fusion.text_weight: words next to another modality;
        meets = len(cond) > 1 if m == "text" else "v" in cond  # fusion.speech_weight: a voice next to a face
        if m[0] in cond and meets:
            weights[m] = weight
    c = len(meta.class_names)
    log_p = np.log(np.full(c, 1.0 / c))  # the target prior: uniform
    for m in MODALITIES:
        if m[0] not in cond:
            continue
        if m == "video":
            p = meta.calibrate_face(face_expert_probs(w[m], np.ones(len(w[m]), bool), meta.class_names))
        else:
            (head,) = [h for h in meta.experts.values() if h.modality == m]
            p = head(w[m])
        divide = priors[m] if prior["chosen"] == "train" else np.full(c, 1.0 / c)
        log_p = log_p + weights[m] * (np.log(p) - np.log(divide))
    z = log_p / meta.temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def test_the_shipped_model_fuses_by_the_product_rule_without_a_learned_residual_where_no_real_pairs_exist():
    fm, meta, extra = _load()
    assert meta.fusion_rule == "product" == fm.fusion_rule
    gate = fm.model.product_deep_gate
    for cond in NO_REAL_PAIRS:
        assert float(gate[ROW[cond]]) == 0.0, cond  # nothing but the product where no real pairs exist
    stage = FusionStage(fm, create_backend("torch", fm.model, fm.cache_key))
    for i, w in enumerate(_windows(meta, 3, seed=1)):
        for cond in NO_REAL_PAIRS:
            got = stage(w, np.asarray(CONDITIONS[cond], np.float32))
            want = _closed_form(meta, extra, w, cond)
            assert np.max(np.abs(got - want)) < TOL, (i, cond, got, want)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch", "tensorrt"])
def test_the_product_rule_matches_its_closed_form_for_every_set_on_every_backend(backend, tmp_path):
    if backend == "tensorrt":
        if not torch.cuda.is_available():
            pytest.skip("tensorrt needs a CUDA GPU, and none is visible here")
        pytest.importorskip("tensorrt", reason="TensorRT is not installed here")
    fm, meta, extra = _load("product")
    with torch.no_grad():
        fm.model.product_deep_gate.zero_()  # the rule itself, without the attention path's residual
    opts = {"cache_dir": str(tmp_path)} if backend != "torch" else {}
    if backend == "tensorrt":
        opts["device"] = "cuda"
    stage = FusionStage(fm, create_backend(backend, fm.model, fm.cache_key + "-no-residual", **opts))
    for i, w in enumerate(_windows(meta, 3, seed=2)):
        for cond, avail in CONDITIONS.items():
            got = stage(w, np.asarray(avail, np.float32))
            want = _closed_form(meta, extra, w, cond)
            assert np.max(np.abs(got - want)) < TOL, (backend, i, cond, got, want)


@pytest.mark.parametrize(
    ("key", "asked", "suffix"),
    [
        ("text_weight=1", {"text": 1.0}, "text1"),
        ("speech_weight=0.4", {"audio": 0.4}, "speech0.4"),
    ],
)
def test_an_experts_weight_sets_its_exponent_next_to_other_modalities(key, asked, suffix):
    """fusion.text_weight / fusion.speech_weight: that expert's exponent wherever words meet another
    modality / a voice meets a face, everything else as the checkpoint fitted it."""
    fm, meta, extra = _load("checkpoint", f"fusion.{key}")
    assert fm.identity.endswith(f"+{suffix}") and f"-{suffix}-" in fm.cache_key  # then the table's hash
    with torch.no_grad():
        fm.model.product_deep_gate.zero_()  # the rule itself
    stage = FusionStage(fm, create_backend("torch", fm.model, fm.cache_key))
    for w in _windows(meta, 2, seed=4):
        for cond, avail in CONDITIONS.items():
            got = stage(w, np.asarray(avail, np.float32))
            want = _closed_form(meta, extra, w, cond, asked)
            assert np.max(np.abs(got - want)) < TOL, (cond, got, want)
    name = key.split("=")[0]
    with pytest.raises(ValueError, match=name):
        load_engine_config(None, [f"fusion.{name}=2"])
    with pytest.raises(ValueError, match="applies to the product rule"):
        _load("learned", f"fusion.{key}")


def test_the_learned_rule_is_the_same_checkpoint_under_another_name_and_graph():
    product, _, _ = _load()
    learned, meta, _ = _load("learned")
    assert learned.identity == f"{product.identity}+learned" and learned.cache_key != product.cache_key
    w = _windows(meta, 1, seed=3)[0]
    a = FusionStage(product, create_backend("torch", product.model, product.cache_key))
    b = FusionStage(learned, create_backend("torch", learned.model, learned.cache_key))
    avail = np.ones(3, np.float32)
    assert np.max(np.abs(a(w, avail) - b(w, avail))) > 1e-4  # a different reading of the same window


def test_a_rule_for_a_model_without_experts_fails_in_one_line():
    from engine.config import MODELS

    extra = read_metadata(resolve_path(MODELS["cider"][0]))["extra"]
    meta = FusionMeta.from_extra(extra)
    cfg = load_engine_config(None, [f"checkpoint={MODELS['cider'][0]}", "fusion.rule=product"])
    with pytest.raises(ValueError, match="no per-modality experts"):
        load_fusion_model(cfg, meta.extractor_profile, meta.dims)
    with pytest.raises(ValueError, match="fusion.rule must be one of"):
        load_engine_config(None, ["fusion.rule=mean"])
