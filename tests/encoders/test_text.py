from __future__ import annotations

import numpy as np
import pytest

from models.encoders.text import TextConfig, TextEncoder, text_dim


def test_minilm_token_features_and_mask(extractors):
    enc = extractors.text
    assert enc.dim == 384 == text_dim(TextConfig())
    feats, mask = enc.encode(["Don't forget a jacket.", "", "yes"])
    assert feats.dtype == np.float32 and mask.dtype == bool
    assert feats.shape[:2] == mask.shape and feats.shape[2] == 384
    lengths = mask.sum(1)
    assert lengths[1] == 2  # [CLS] [SEP] only
    assert lengths[0] > lengths[2] >= 3
    assert np.all(feats[~mask] == 0)  # padding positions are zeroed
    assert np.abs(feats[mask]).mean() > 0.01
    # Batched and single encoding agree on the valid positions.
    single = enc("yes")
    np.testing.assert_allclose(single, feats[2][mask[2]], atol=1e-4)


def test_real_model_separates_meaning(extractors):
    enc = extractors.text

    def mean_vec(t: str) -> np.ndarray:
        x = enc(t)
        v = x.mean(0)
        return v / np.linalg.norm(v)

    a, b, c = (
        mean_vec("I am so happy today"),
        mean_vec("I feel very glad today"),
        mean_vec("The train leaves at nine"),
    )
    assert a @ b > a @ c + 0.1


def test_random_init_paper_width_without_download():
    cfg = TextConfig(model="bert-base-uncased", init="random", config_overrides={"num_hidden_layers": 1})
    assert text_dim(cfg) == 768
    enc = TextEncoder(cfg)
    x = enc("hello world")
    assert x.shape == (4, 768)


def test_missing_hub_model_error_names_the_fix():
    with pytest.raises(RuntimeError, match="huggingface-cli download"):
        TextEncoder(TextConfig(model="bert-base-uncased"))
    with pytest.raises(ValueError):
        TextConfig(init="pretrainedd")
