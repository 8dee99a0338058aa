from __future__ import annotations

import numpy as np
import pytest

from tests.encoders.media import clip, offline_extractors, read_frames


@pytest.fixture(scope="session")
def extractors():
    return offline_extractors()


@pytest.fixture(scope="session")
def ang_frames() -> list[np.ndarray]:
    return read_frames(clip("ANG"))[0]


@pytest.fixture(scope="session")
def hap_frames() -> list[np.ndarray]:
    return read_frames(clip("HAP"))[0]
