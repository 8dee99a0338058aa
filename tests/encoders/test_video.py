from __future__ import annotations

import numpy as np
import pytest

from models.encoders.video import NoVideoStreamError, has_video, iter_frames
from tests.encoders.media import clip, wav


def test_every_frame_at_30_fps_and_subsampling():
    frames = list(iter_frames(clip("ANG"), max_fps=30))
    assert len(frames) == 67  # 29.97 fps VP6 clip, 2.2 s
    assert frames[0].rgb.shape == (360, 480, 3) and frames[0].rgb.dtype == np.uint8
    times = np.array([f.time for f in frames])
    assert np.all(np.diff(times) > 0)
    assert abs(np.median(np.diff(times)) - 1 / 29.97) < 2e-3
    ten = list(iter_frames(clip("ANG"), max_fps=10))
    assert len(ten) in (22, 23)
    assert np.min(np.diff([f.time for f in ten])) > 0.06
    assert len(list(iter_frames(clip("ANG")))) == 67


def test_span_is_relative_and_bounded():
    span = list(iter_frames(clip("HAP"), max_fps=30, start=0.5, end=1.0))
    assert 14 <= len(span) <= 16
    assert all(0 <= f.time < 0.5 for f in span)


def test_audio_file_has_no_video():
    assert has_video(clip("SAD")) and not has_video(wav("SAD"))
    with pytest.raises(NoVideoStreamError):
        list(iter_frames(wav("SAD")))
    with pytest.raises(ValueError):
        list(iter_frames(clip("SAD"), max_fps=0))
