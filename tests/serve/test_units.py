"""The service's pure parts: wire format, the slow-client send queue, admission decisions, limits."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from engine.serve.admission import Admission, LoadMonitor
from engine.serve.limits import FrameRate, MediaLead, TokenBucket
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
from engine.serve.send_queue import SendQueue
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


class _Clocks:
    """A wall clock and a process CPU clock that the test moves (as the load would)."""

    def __init__(self) -> None:
        self.wall, self.cpu = 100.0, 0.0

    def run(self, seconds: float, cores_busy: float) -> None:
        self.wall += seconds
        self.cpu += seconds * cores_busy


def test_admission_forecasts_one_more_stream_from_the_running_streams_cpu_share() -> None:
    clk = _Clocks()
    mon = LoadMonitor(window_s=10.0, cores=2, clock=lambda: clk.wall, cpu_clock=lambda: clk.cpu)
    adm = Admission(
        max_streams=8, e2e_budget_ms=1000.0, max_cpu=0.95, monitor=mon, forecast=True, settle_s=5.0
    )
    assert adm.try_admit().admitted  # the first stream: nothing measured yet
    clk.run(2.0, 1.0)
    assert adm.check().admitted and adm.stream_share is None  # not settled: no share measured yet
    clk.run(4.0, 1.0)  # one stream has kept one of the two cores busy for 6 s
    d = adm.check()
    assert not d.admitted and d.kind == "cpu_forecast" and adm.stream_share == pytest.approx(0.5)
    assert "server full" in d.reason and "50%" in d.reason and "100%" in d.reason and "95%" in d.reason

    # A machine where a stream takes a quarter of the cores: two more fit, the fourth does not.
    clk2 = _Clocks()
    mon2 = LoadMonitor(window_s=10.0, cores=2, clock=lambda: clk2.wall, cpu_clock=lambda: clk2.cpu)
    adm2 = Admission(max_streams=8, e2e_budget_ms=1000.0, max_cpu=0.95, monitor=mon2, forecast=True)
    assert adm2.try_admit().admitted
    clk2.run(6.0, 0.5)
    assert adm2.try_admit().admitted and adm2.stream_share == pytest.approx(0.25)
    # just after a change, the last measured share stands in: a burst of clients is forecast too
    assert adm2.try_admit().admitted and adm2.active == 3
    d = adm2.check()
    assert not d.admitted and d.kind == "cpu_forecast"  # 4 x 25% = 100% > 95%
    adm2.release()
    clk2.run(6.0, 0.5 * 2)  # two streams, a quarter of the cores each
    assert adm2.check().admitted and adm2.stream_share == pytest.approx(0.25)

    # Without the forecast, the same load is admitted (the measured CPU is under max_cpu).
    clk3 = _Clocks()
    mon3 = LoadMonitor(window_s=10.0, cores=2, clock=lambda: clk3.wall, cpu_clock=lambda: clk3.cpu)
    adm3 = Admission(max_streams=8, e2e_budget_ms=1000.0, max_cpu=0.95, monitor=mon3, forecast=False)
    assert adm3.try_admit().admitted
    clk3.run(6.0, 1.0)
    assert adm3.check().admitted


def _real_jpeg() -> bytes:
    import av

    frame = av.open(str(ANG)).decode(video=0).__next__().to_ndarray(format="bgr24")
    ok, buf = cv2.imencode(".jpg", frame)
    assert ok
    return buf.tobytes()


def test_image_size_is_read_past_any_number_of_leading_segments() -> None:
    jpg = _real_jpeg()
    h, w = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR).shape[:2]
    comments = b"".join(b"\xff\xfe" + (60_002).to_bytes(2, "big") + bytes(60_000) for _ in range(3))
    padded = jpg[:2] + comments + jpg[2:]  # 180 kB of comments before the frame header
    assert image_size(jpg) == image_size(padded) == (w, h)
    assert cv2.imdecode(np.frombuffer(padded, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (h, w)
    sos = jpg.index(b"\xff\xda")
    sof = next(jpg.index(m) for m in (b"\xff\xc0", b"\xff\xc2") if m in jpg[:sos])
    no_sof = jpg[:sof] + jpg[sos:]  # scan data with no frame header before it
    assert image_size(no_sof) is None
    zero_h = bytearray(jpg)
    zero_h[sof + 5 : sof + 7] = b"\x00\x00"  # height 0: "given later by a DNL marker"
    assert image_size(bytes(zero_h)) is None
    assert image_size(jpg[: sof + 6]) is None  # truncated inside the frame header


def test_token_bucket_holds_the_rate_after_a_burst() -> None:
    b = TokenBucket(rate=10.0, burst=5.0, now=0.0)
    assert [b.take(0.0) for _ in range(5)] == [0.0] * 5  # the burst goes at once
    assert b.take(0.0) == pytest.approx(0.1)  # then one every 1/rate
    assert b.take(0.0) == pytest.approx(0.2)
    assert b.take(10.0) == 0.0  # refilled, but never beyond the burst
    assert [b.take(10.0) for _ in range(4)] == [0.0] * 4 and b.take(10.0) > 0


def test_media_lead_holds_what_runs_ahead_and_refuses_a_jump() -> None:
    lead = MediaLead(max_lead_s=2.0, max_gap_s=10.0, wall0=100.0)
    assert lead.hold_s(0.0, 1.0, 100.0, "audio") == 0.0  # 1 s ahead: at once
    assert lead.hold_s(1.0, 5.0, 100.0, "audio") == pytest.approx(3.0)  # 5 s ahead: hold 3 s
    assert lead.hold_s(5.0, 6.0, 105.0, "audio") == 0.0  # the clock caught up
    assert lead.hold_s(60.0, 61.0, 160.0, "audio") == 0.0  # a pause in sending, on time: a dropout
    with pytest.raises(ProtocolError) as e:
        lead.hold_s(1e6, 1e6 + 0.2, 160.5, "audio")
    assert e.value.code == 1007 and "jumped ahead" in e.value.message


def test_frame_rate_drops_frames_beyond_max_fps() -> None:
    fr = FrameRate(max_fps=30.0, burst=5.0)
    at_60 = [fr.keep(i / 60.0) for i in range(600)]  # 10 s of a 60 fps camera
    assert 295 <= sum(at_60) <= 306
    fr = FrameRate(max_fps=30.0, burst=5.0)
    assert all(fr.keep(i / 30.0) for i in range(300))  # 30 fps: every frame kept
