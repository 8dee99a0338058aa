"""The shipped model's recipe, as its steps share it: the train config, the speech corpora whose
speakers are cross-validated, and the speaker folds."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "train" / "cmarr_offline.yaml"
SPEAKER_CORPORA = ("ravdess", "emodb")  # speech corpora with many speakers: folded by speaker


def speaker_folds(store: Path, k: int) -> list[list[str]]:
    """k folds of the speech corpora's speakers: sorted per corpus, speaker i goes to fold i % k."""
    from training.data.feature_store import FeatureStore

    fs = FeatureStore(store)
    folds: list[list[str]] = [[] for _ in range(k)]
    for corpus in SPEAKER_CORPORA:
        speakers = sorted({fs.meta(u)["speaker"] for u in fs.ids() if fs.meta(u).get("corpus") == corpus})
        for i, spk in enumerate(speakers):
            folds[i % k].append(spk)
    return folds
