"""File replay: media time starts at 0 whatever the container's first timestamp, frames above the
pixel cap are scaled down, and ``stop()`` ends a replay at once. Media are the bundled CREMA-D clip,
re-encoded with PyAV."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.frames import AudioFrame, EndFrame, VideoFrame
from engine.sources import FileReplaySource
from engine.sources.base import MediaClock
from engine.sources.file_replay import DEFAULT_MAX_PIXELS, capped_size
from models.encoders.audio import load_audio
from tests.engine.media import ANG, ANG_WAV, decode_video, write_media
from tests.engine.test_sources import collect, of

OFFSET_S = 3600.0  # an MPEG-TS capture that starts an hour into its clock
AV_STREAM = Path(__file__).resolve().parents[1] / "data" / "streams" / "cremad_1001_x5.mp4"  # 64 s


def write_offset_ts(path: Path, offset_s: float) -> Path:
    """The clip's video (mpeg4) and audio (mp2, 16 kHz) as MPEG-TS, every timestamp + ``offset_s``."""
    import av

    frames = decode_video(ANG)
    pcm16 = (np.clip(load_audio(ANG_WAV), -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w", format="mpegts") as out:
        vs = out.add_stream("mpeg4", rate=30)
        vs.width, vs.height, vs.pix_fmt = frames[0][1].shape[1], frames[0][1].shape[0], "yuv420p"
        vs.time_base = Fraction(1, 90000)
        audio = out.add_stream("mp2", rate=16000, layout="mono")
        for t, rgb in frames:
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            vf.pts, vf.time_base = int(round((offset_s + t) * 90000)), Fraction(1, 90000)
            for p in vs.encode(vf):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        for i in range(0, len(pcm16), 1152):
            af = av.AudioFrame.from_ndarray(pcm16[None, i : i + 1152].copy(), format="s16", layout="mono")
            af.sample_rate, af.pts, af.time_base = 16000, int(offset_s * 16000) + i, Fraction(1, 16000)
            for p in audio.encode(af):
                out.mux(p)
        for p in audio.encode():
            out.mux(p)
    return path


def stream_starts(path: Path) -> dict[str, float]:
    import av

    with av.open(str(path)) as c:
        return {s.type: float(s.start_time * s.time_base) for s in c.streams if s.type in ("audio", "video")}


def test_replay_starts_at_zero_and_keeps_tracks_aligned(tmp_path: Path) -> None:
    ts = write_offset_ts(tmp_path / "capture.ts", OFFSET_S)
    starts = stream_starts(ts)
    assert min(starts.values()) > OFFSET_S - 1  # the file really starts an hour in

    # Real-time pace: the first frames are due at once, not in an hour (collect times out at 20 s).
    t0 = time.monotonic()
    frames = collect(FileReplaySource(ts, fast=False, max_seconds=1.0), timeout=20.0)
    took = time.monotonic() - t0
    assert 0.8 < took < 6.0, took
    video, audio = of(frames, VideoFrame), of(frames, AudioFrame)
    assert audio[0].t == pytest.approx(0.0, abs=1e-6)  # mp2's encoder delay makes audio the earliest track
    # One origin for both tracks: the video keeps its lead over the audio from the container.
    assert video[0].t == pytest.approx(starts["video"] - starts["audio"], abs=1e-3)
    assert video[0].t < 0.1 and isinstance(frames[-1], EndFrame) and frames[-1].t == pytest.approx(1.0)

    # The whole file: the same frame times as the original clip, and the end of the media, not 3600 s.
    frames = collect(FileReplaySource(ts, fast=True))
    video = of(frames, VideoFrame)
    ref = decode_video(ANG)
    assert len(video) == len(ref)
    lead = video[0].t - ref[0][0]  # the encoders' delays; mpeg4 at 30 fps rounds times to 1/30 s
    assert all(abs(v.t - t - lead) < 1 / 30 for v, (t, _) in zip(video, ref, strict=True))
    assert frames[-1].t == pytest.approx(len(load_audio(ANG_WAV)) / 16000, abs=0.1)


def test_capped_size_keeps_the_aspect_ratio() -> None:
    assert capped_size(7680, 4320, DEFAULT_MAX_PIXELS) == (1920, 1080)  # 8K -> 1080p
    assert capped_size(1920, 1080, DEFAULT_MAX_PIXELS) == (1920, 1080)  # at the cap: unchanged
    assert capped_size(480, 360, 320 * 240) == (320, 240)
    assert capped_size(30000, 20000, None) == (30000, 20000)
    for w, h, cap in ((4000, 3000, 1_000_000), (1081, 1921, 100_000), (5000, 7, 1000)):
        cw, ch = capped_size(w, h, cap)
        assert cw * ch <= cap and abs(cw / ch - w / h) <= w / h * (1 / ch + 1 / cw) + 1e-9


def test_replay_scales_frames_down_to_the_cap(tmp_path: Path) -> None:
    # The real clip under a small cap: every frame is the clip's frame, area-scaled.
    ref = decode_video(ANG)
    frames = of(collect(FileReplaySource(ANG, fast=True, max_pixels=320 * 240)), VideoFrame)
    assert len(frames) == len(ref) and all(f.image.shape == (240, 320, 3) for f in frames)
    for (_, rgb), f in zip(ref, frames, strict=True):
        small = cv2.resize(rgb, (320, 240), interpolation=cv2.INTER_AREA)
        assert np.abs(small.astype(np.float32) - f.image).mean() < 4.0

    # A 2880 x 2160 (6.2 Mpx) video made from the clip: the default cap brings it under 1080p's pixels.
    big = [(t, cv2.resize(rgb, (2880, 2160), interpolation=cv2.INTER_CUBIC)) for t, rgb in ref[:6]]
    path = write_media(tmp_path / "big.mkv", big)
    frames = of(collect(FileReplaySource(path, fast=True)), VideoFrame)
    assert len(frames) == 6
    h, w = frames[0].image.shape[:2]
    assert (w, h) == capped_size(2880, 2160, DEFAULT_MAX_PIXELS) and w * h <= DEFAULT_MAX_PIXELS
    assert abs(w / h - 4 / 3) < 0.01
    for (_, rgb), f in zip(ref, frames, strict=False):
        back = cv2.resize(f.image, (480, 360), interpolation=cv2.INTER_AREA)
        assert np.abs(back.astype(np.float32) - rgb).mean() < 6.0
    # No cap: the frames come through at full size.
    full = of(collect(FileReplaySource(path, fast=True, max_pixels=None)), VideoFrame)
    assert full[0].image.shape == (2160, 2880, 3)


def test_stop_ends_a_paced_replay_at_once() -> None:
    src = FileReplaySource(AV_STREAM, fast=False)
    frames: list = []

    async def emit(f: object) -> None:
        frames.append(f)

    async def go() -> float:
        task = asyncio.create_task(src.run(emit, MediaClock()))
        await asyncio.sleep(1.0)
        src.stop()
        t0 = time.monotonic()
        await asyncio.wait_for(task, 5.0)
        return time.monotonic() - t0

    took = asyncio.run(go())
    assert took < 0.5, took  # the pacing sleep is cut short
    assert isinstance(frames[-1], EndFrame) and not any(isinstance(f, EndFrame) for f in frames[:-1])
    media = [f for f in frames if isinstance(f, AudioFrame | VideoFrame)]
    reached = max(f.t + (f.duration if isinstance(f, AudioFrame) else 0.0) for f in media)
    assert 0.8 < reached < 1.6 and frames[-1].t == pytest.approx(reached)  # ended where it was
