"""Streams decoding through one BatchingRecogniser: batched, and the same words as one by one."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from faster_whisper import decode_audio

from engine.core.batched_asr import BatchingRecogniser
from tests.engine.test_long_stream import MONOLOGUE


def test_concurrent_windows_are_decoded_in_batches_with_the_same_words(extractors: Any) -> None:
    asr = extractors.asr
    audio = decode_audio(str(MONOLOGUE), sampling_rate=16000)
    windows = [audio[i * 64000 : (i + 1) * 64000] for i in range(2, 8)]  # six 4 s windows of speech
    encoded = [asr.encode(w) for w in windows]
    prompt = "Thank you for calling"
    alone = [asr.decode(e, len(w), prompt=prompt).text for e, w in zip(encoded, windows, strict=True)]
    rec = BatchingRecogniser(asr, max_batch=8, max_wait_ms=200.0)  # wide: the threads start at once
    got: dict[int, str] = {}
    start = threading.Barrier(len(windows))

    def stream(i: int) -> None:
        start.wait()
        got[i] = rec.decode(encoded[i], len(windows[i]), prompt=prompt).text

    try:
        threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(windows))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert rec.stats.windows == len(windows) and rec.stats.largest > 1  # batched, none lost
        assert rec.stats.batches < len(windows)
        # The batch changes nothing but numerics: each window's words are the same as alone, but for a
        # word or two at most.
        for i, text in got.items():
            a, b = alone[i].lower().split(), text.lower().split()
            assert len(set(a) ^ set(b)) <= 2, (alone[i], text)
        assert all(got.values())
        assert (
            rec.cfg is asr.cfg and rec.encode(windows[0]).shape == encoded[0].shape
        )  # encoding passes through
    finally:
        rec.close()
    with pytest.raises(RuntimeError, match="closed"):
        rec.decode(encoded[0], len(windows[0]))


def test_a_failing_batch_fails_its_windows_only(extractors: Any) -> None:
    class Broken:
        cfg = extractors.asr.cfg

        def decode_batch(self, reqs: list) -> list:
            raise ValueError("decoder broke")

    rec = BatchingRecogniser(Broken(), max_wait_ms=0.0)
    try:
        with pytest.raises(ValueError, match="decoder broke"):
            rec.decode(
                extractors.asr.encode(decode_audio(str(MONOLOGUE), sampling_rate=16000)[:16000]), 16000
            )
        assert rec.stats.batches == 1  # the dispatcher is still there
    finally:
        rec.close()
