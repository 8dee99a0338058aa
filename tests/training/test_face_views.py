"""Still face images become short pseudo-videos that the engine's face path reads like live frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data.face_views import CANVAS, still_views

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray]:
    if not DATA.is_dir():
        pytest.skip("the real corpus copies (shared/data next to the repository) are not on this machine")
    d = np.load(DATA / "fer2013-4class.npz", allow_pickle=True)
    idx = np.flatnonzero(d["split"] == "test")[::400][:16]
    return d["images"][idx], d["label"][idx]


def test_views_are_deterministic_frames_with_variation(faces) -> None:  # noqa: ANN001
    img = faces[0][0]
    a, b = still_views(img, 4, "fer2013:x"), still_views(img, 4, "fer2013:x")
    assert len(a) == 4 and all(v.shape == (CANVAS, CANVAS, 3) and v.dtype == np.uint8 for v in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], still_views(img, 4, "fer2013:y")[1])  # another sample, other jitter
    assert not np.array_equal(a[0], a[1])
    with pytest.raises(ValueError):
        still_views(img, 0, "k")


def test_the_engine_face_path_finds_and_reads_the_faces(faces) -> None:  # noqa: ANN001
    from tests.encoders.media import offline_extractors
    from training.fit.experts import face_expert_probs

    fx = offline_extractors().face
    found, right = 0, 0
    for img, label in zip(*faces, strict=True):
        r = fx.extract(still_views(img, 3, "k"))
        found += int(r.present.sum())
        p = face_expert_probs(r.features, r.present, ("ang", "hap", "neu", "sad"))
        right += p is not None and ("ang", "hap", "neu", "sad")[int(np.argmax(p))] == label
    assert found >= 0.85 * 3 * len(faces[0])  # BlazeFace finds the face in nearly every view
    assert right >= 0.5 * len(faces[0])  # and the expression model reads most of them (chance: 0.25)
