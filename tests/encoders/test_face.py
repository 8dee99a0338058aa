from __future__ import annotations

import numpy as np
import pytest

from models.encoders.face import (
    FaceBox,
    FaceDetector,
    FaceDetectorConfig,
    FaceFeatureExtractor,
    FaceSelector,
    crop_face,
    default_detector_path,
)


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as d:
        yield d


def test_bundled_detector_finds_the_face_in_90_percent_of_frames(detector, ang_frames):
    found = [detector.detect(f) for f in ang_frames]
    rate = np.mean([len(b) > 0 for b in found])
    assert rate >= 0.9
    # The actor's face sits in the upper middle of the 480x360 frame; boxes are pixel coordinates.
    box = found[len(found) // 2][0]
    assert 0.5 < box.score <= 1.0
    assert 100 < (box.x0 + box.x1) / 2 < 380 and 0 < (box.y0 + box.y1) / 2 < 300
    assert 40 < box.width < 300 and 40 < box.height < 300
    assert len(box.keypoints) == 6
    right_eye, left_eye = box.keypoints[0], box.keypoints[1]
    assert box.x0 <= min(right_eye[0], left_eye[0]) and max(right_eye[0], left_eye[0]) <= box.x1


def test_no_face_in_a_black_frame(detector):
    assert detector.detect(np.zeros((360, 480, 3), np.uint8)) == []
    with pytest.raises(ValueError):
        detector.detect(np.zeros((360, 480), np.uint8))


def test_selector_largest_and_track():
    big = FaceBox(0, 0, 100, 100, 0.9)
    small = FaceBox(200, 200, 260, 260, 0.99)
    assert FaceSelector("largest")([small, big]) is big
    tr = FaceSelector("track", track_iou=0.3)
    assert tr([small]) is small
    # A bigger face appears, but the tracked (slightly moved) small face is kept.
    moved = FaceBox(205, 203, 265, 263, 0.95)
    assert tr([big, moved]) is moved
    assert tr([]) is None  # a missed frame keeps the identity
    assert tr([big, FaceBox(208, 206, 268, 266, 0.9)]).x0 == 208
    tr.reset()
    assert tr([big, moved]) is big  # after a reset: largest
    with pytest.raises(ValueError):
        FaceSelector("random")


def test_crop_face_geometry_and_padding():
    img = np.zeros((100, 200, 3), np.uint8)
    img[20:60, 50:90] = 255  # a white 40x40 square
    box = FaceBox(50, 20, 90, 60, 1.0)
    c = crop_face(img, box, margin=0.0, size=40)
    assert c.shape == (40, 40) and c.dtype == np.uint8
    assert c.min() > 250  # exactly the square
    c2 = crop_face(img, box, margin=0.5, size=80)  # side 80: the square is the middle half
    assert c2[40, 40] > 250 and c2[5, 5] < 5
    edge = crop_face(img, FaceBox(-20, -20, 20, 20, 1.0), margin=0.0, size=40)
    assert edge[:20].max() == 0  # outside the frame is zero-padded


def test_feature_extractor_zero_vector_and_flag_without_face(detector, extractors, ang_frames):
    fx = FaceFeatureExtractor(detector, extractors.face_embedder, margin=0.1)
    black = np.zeros_like(ang_frames[0])
    frames = [ang_frames[10], black, ang_frames[20]]
    r = fx.extract(frames)
    assert r.features.shape == (3, 128) and r.features.dtype == np.float32
    assert r.present.tolist() == [True, False, True]
    assert np.all(r.features[1] == 0) and np.abs(r.features[0]).sum() > 0
    assert r.boxes[1] is None and isinstance(r.boxes[0], FaceBox)
    assert r.probs is not None and r.probs.shape == (3, 7)
    np.testing.assert_allclose(r.probs[[0, 2]].sum(1), 1, atol=1e-5)
    feat, present, box = fx(black)
    assert not present and box is None and not feat.any()
    # Batched and per-frame extraction agree.
    feat0, present0, _ = fx(ang_frames[10])
    assert present0
    np.testing.assert_allclose(feat0, r.features[0], atol=1e-5)


def test_detector_config_validation_and_missing_model(tmp_path):
    with pytest.raises(ValueError, match="selection"):
        FaceDetectorConfig(selection="nearest")
    with pytest.raises(ValueError, match="min_confidence"):
        FaceDetectorConfig(min_confidence=1.5)
    with pytest.raises(FileNotFoundError, match="mediapipe==0.10.21"):
        FaceDetector(FaceDetectorConfig(model_path=str(tmp_path / "none.tflite")))
    assert default_detector_path().stat().st_size == 229714
