"""The service's pure parts: wire format, the slow-client send queue, admission decisions."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from engine.serve.admission import Admission, LoadMonitor
from engine.serve.protocol import (
    AudioFormat,
    ProtocolError,
    decode_audio,
    image_size,
    pack_audio,
    pack_image,
    parse_header,
    parse_start,
)
from engine.serve.session import SendQueue
from tests.serve.conftest import ANG


def test_audio_round_trips_in_both_encodings() -> None:
    rng = np.random.default_rng(1)
    x = np.clip(0.3 * rng.standard_normal((4410, 2)), -1, 1).astype(np.float32)
    for enc, tol in (("pcm16", 1 / 32768), ("f32", 0.0)):  # +1.0 itself clips to 32767/32768
        fmt = AudioFormat(enc, 44100, 2)
        msg = parse_header(pack_audio(x, 12.5, fmt))
        assert msg.t == 12.5 and msg.aux == 44100
        np.testing.assert_allclose(decode_audio(msg, fmt), x, atol=tol + 1e-7)


def test_image_size_is_read_from_real_encoded_frames() -> None:
    import av

    with av.open(str(ANG)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="bgr24")
    h, w = frame.shape[:2]
    for ext in (".jpg", ".png"):
        ok, buf = cv2.imencode(ext, frame)
        assert ok
        payload = parse_header(pack_image(buf.tobytes(), 0.0)).payload
        assert image_size(payload) == (w, h)


def test_start_defaults_and_overrides() -> None:
    s = parse_start({"type": "start", "stream": "7", "overrides": {"window.hop_s": 0.5, "expert": False}})
    assert s.modalities == ("audio", "video") and s.audio == AudioFormat("pcm16", 16000, 1)
    assert s.override_items() == ["window.hop_s=0.5", "expert=false"]
    with pytest.raises(ProtocolError, match="unknown start field"):
        parse_start({"type": "start", "stream": "x", "checkpoint": "y"})
    with pytest.raises(ProtocolError, match="wrong type"):
        parse_start({"type": "start", "stream": "x", "overrides": {"window.hop_s": True}})


def test_slow_client_queue_drops_the_oldest_events_never_control_messages() -> None:
    async def run() -> tuple[list, int]:
        q = SendQueue(3)
        q.put({"type": "ready"}, droppable=False)
        for i in range(6):
            q.put({"type": "event", "seq": i})
        q.put({"type": "event", "seq": 6, "final": True}, droppable=False)
        q.put({"type": "summary"}, droppable=False)
        q.close()
        out = []
        while (m := await q.get()) is not None:
            out.append(m)
        return out, q.dropped

    out, dropped = asyncio.run(run())
    assert dropped == 3
    assert [m.get("seq") for m in out] == [None, 3, 4, 5, 6, None]
    assert out[0]["type"] == "ready" and out[-1]["type"] == "summary"


def test_admission_refuses_over_capacity_and_over_latency_budget() -> None:
    mon = LoadMonitor(window_s=10.0, cores=2)
    adm = Admission(max_streams=3, e2e_budget_ms=1000.0, max_cpu=0.9, monitor=mon)
    assert adm.try_admit().admitted and adm.active == 1
    for v in (400, 500, 600, 700, 800):
        mon.observe(v)
    assert adm.try_admit().admitted
    for v in [1500] * 20:
        mon.observe(v)
    d = adm.check()
    assert not d.admitted and d.kind == "latency" and "e2e p95" in d.reason
    adm.release()
    adm.release()
    assert adm.check().admitted  # nothing running: past load is no reason to refuse
    adm.active = 3
    assert adm.check().kind == "capacity" and "3 of 3" in adm.check().reason
