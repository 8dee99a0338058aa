"""Prometheus metrics of one server process (``GET /metrics``), on a registry of its own."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

disable_created_metrics()  # no *_created series: they only add noise to scrapes
E2E_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0)
CPU_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0)


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.active = Gauge("emotion_active_streams", "Streams running now", registry=r)
        self.capacity = Gauge(
            "emotion_capacity_streams", "Configured maximum of concurrent streams", registry=r
        )
        self.streams = Counter("emotion_streams", "Streams admitted", registry=r)
        self.pending = Gauge(
            "emotion_pending_connections", "Sockets connected whose start message is not in yet", registry=r
        )
        self.draining = Gauge("emotion_draining", "1 while the server drains for a shutdown", registry=r)
        self.events = Counter("emotion_events", "Events produced by the engines", registry=r)
        self.sent = Counter("emotion_events_sent", "Events sent to clients", registry=r)
        self.e2e = Histogram(
            "emotion_e2e_latency_seconds",
            "Media arrival to event emission, per event",
            buckets=E2E_BUCKETS,
            registry=r,
        )
        self.dropped_events = Counter(
            "emotion_dropped_events", "Events dropped because a client read too slowly", registry=r
        )
        self.dropped_audio = Counter(
            "emotion_dropped_audio_samples", "Audio samples the engines dropped (full queues)", registry=r
        )
        self.dropped_frames = Counter(
            "emotion_dropped_video_frames", "Video frames the engines dropped (full queues)", registry=r
        )
        self.rejections = Counter("emotion_rejections", "Streams refused, by reason", ["reason"], registry=r)
        self.errors = Counter(
            "emotion_stream_errors", "Streams ended by an error, by kind", ["kind"], registry=r
        )
        self.disconnects = Counter("emotion_client_disconnects", "Clients that left mid-stream", registry=r)
        self.cpu_seconds = Counter(
            "emotion_stream_cpu_seconds",
            "Process CPU seconds spent while streams were open, split among them (engine/serve/cpu_share.py)",
            registry=r,
        )
        self.cpu_per_media_s = Histogram(
            "emotion_stream_cpu_seconds_per_media_second",
            "Each finished stream's CPU seconds per second of its media (cores one such stream needs)",
            buckets=CPU_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
