"""One file's decoded tracks as engine frames: audio resampled to 16 kHz and timed sample-exact from its
first frame, video timed by its own timestamps, both from one media origin. A packet that fails to
decode marks its track missing from that media time until a packet decodes again."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from engine.frames import AudioFrame, Frame, SourceStatusFrame, VideoFrame
from engine.sources.resample import StreamResampler
from models.encoders.audio import TARGET_SR

if TYPE_CHECKING:
    import av


class TrackDecoder:
    """The frames of one pass over a file's selected streams (``offset``: where the pass starts in media
    time). ``here`` is the media time reached so far."""

    def __init__(
        self,
        a_stream: av.AudioStream | None,
        v_stream: av.VideoStream | None,
        origin: float,
        offset: float,
        name: str,
        file_name: str,
        rgb: Callable[[av.VideoFrame], np.ndarray],
    ) -> None:
        import av

        self.origin, self.offset, self.name, self.file_name, self.rgb = origin, offset, name, file_name, rgb
        self.here = offset
        self.broken: dict[str, float] = {}  # track -> media time at which its packets stopped decoding
        self.resampler: StreamResampler | None = None
        self.converter = None
        self.a_samples = 0  # 16 kHz samples emitted: audio time is sample-exact and gapless
        self.a_t0: float | None = None
        self.n_video = 0
        if v_stream is not None:
            v_stream.thread_type = "AUTO"
        if a_stream is not None:
            rate = int(a_stream.codec_context.sample_rate or a_stream.rate or TARGET_SR)
            self.resampler = StreamResampler(rate)
            self.converter = av.AudioResampler(format="fltp", layout=a_stream.codec_context.layout, rate=rate)
        self.fps = float(v_stream.average_rate or 30) if v_stream is not None else 30.0  # untimed frames
        # looked up once, not per packet: the decode loop runs for every frame of the file
        self._decode_errors = (av.error.FFmpegError, ValueError, OSError)
        self._audio_frame, self._video_frame = av.AudioFrame, av.VideoFrame

    def packet(self, packet: av.Packet) -> Iterator[Frame]:
        """The frames of one demuxed packet; a packet that does not decode breaks its track."""
        kind = packet.stream.type
        try:
            frames = packet.decode()
        except self._decode_errors as e:
            # A corrupt packet: the track is missing from here until a packet decodes again.
            if kind not in self.broken:
                self.broken[kind] = self.here
                reason = f"decode error in {self.file_name} at {self.here - self.offset:.2f} s: {e}"
                yield SourceStatusFrame(kind, False, reason, self.here, self.name)
            return
        for frame in frames:
            if isinstance(frame, self._audio_frame):
                yield from self._audio(frame)
            elif isinstance(frame, self._video_frame):
                yield from self._video(frame)

    def _audio(self, frame: av.AudioFrame) -> Iterator[Frame]:
        assert self.converter is not None and self.resampler is not None
        if self.a_t0 is None:
            self.a_t0 = max(0.0, float(frame.time) - self.origin if frame.time is not None else 0.0)
        elif "audio" in self.broken and frame.time is not None:
            # Samples were lost with the bad packets: place the audio at its own time.
            self.a_t0 = max(self.a_t0, float(frame.time) - self.origin - self.a_samples / TARGET_SR)
        t = self.offset + self.a_t0 + self.a_samples / TARGET_SR
        if "audio" in self.broken and t > self.broken["audio"]:
            del self.broken["audio"]
            yield SourceStatusFrame("audio", True, "decoding resumed", t, self.name)
        for out in self.converter.resample(frame):
            pcm = self.resampler(out.to_ndarray(), channels_axis=0)  # [C, n] planar
            if len(pcm):
                t = self.offset + self.a_t0 + self.a_samples / TARGET_SR
                self.a_samples += len(pcm)
                self.here = max(self.here, t + len(pcm) / TARGET_SR)
                yield AudioFrame(pcm, TARGET_SR, t, self.name)

    def _video(self, frame: av.VideoFrame) -> Iterator[Frame]:
        t = float(frame.time) - self.origin if frame.time is not None else self.n_video / self.fps
        self.n_video += 1
        t += self.offset
        # Frames the decoder still held from before the damage do not end it.
        if "video" in self.broken and t > self.broken["video"]:
            del self.broken["video"]
            yield SourceStatusFrame("video", True, "decoding resumed", t, self.name)
        self.here = max(self.here, t)
        yield VideoFrame(self.rgb(frame), t, self.name)

    def flush(self) -> Iterator[Frame]:
        """The audio the resamplers still hold at the end of the file."""
        if self.converter is None or self.resampler is None or self.a_t0 is None:
            return
        tail = [o.to_ndarray() for o in self.converter.resample(None)]
        pcm = self.resampler(
            np.concatenate(tail, axis=1) if tail else np.zeros((1, 0), np.float32),
            channels_axis=0,
            last=True,
        )
        if len(pcm):
            yield AudioFrame(pcm, TARGET_SR, self.offset + self.a_t0 + self.a_samples / TARGET_SR, self.name)
