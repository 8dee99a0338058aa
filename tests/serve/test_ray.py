"""The Ray Serve application: a local Ray instance (loopback only, bounded in time) runs the service as a
replica, and a real clip streams through Ray Serve's ingress with the same protocol and client."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request

import pytest

from tests.serve.conftest import ANG, free_port

serve = pytest.importorskip(
    "ray.serve", reason="Ray Serve is the optional [serve] extra: pip install -e '.[serve]'"
)
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def ray_service():
    import ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        from engine.serve.ray_app import build

        app = build({"min_replicas": 1, "max_replicas": 1, "num_cpus": 1, "overrides": ["max_streams=1"]})
        serve.run(app, name="emotion", route_prefix="/", blocking=False)
        import time

        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the Ray Serve replica was not ready within 300 s"
            time.sleep(1.0)
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


def test_a_clip_streams_through_ray_serve(ray_service: int) -> None:
    from engine.tools.client import ServerError, StreamClient, stream_file

    url = f"ws://127.0.0.1:{ray_service}/v1/stream"

    async def run():
        got = []
        refused = None
        async for ev in stream_file(url, ANG, stream="via-ray"):
            if ev.seq == 0:  # capacity 1 per replica, max 1 replica: a second stream is refused now
                with pytest.raises(ServerError) as e:
                    await StreamClient(url, stream="second").connect()
                refused = e.value
            got.append(ev)
        return got, refused

    events, refused = asyncio.run(run())
    assert [e.seq for e in events] == list(range(len(events))) and events[-1].final
    assert events[-1].stream == "via-ray" and events[-1].condition == "tav" and events[-1].trained
    assert "jacket" in events[-1].transcript.lower()
    assert refused is not None and refused.code == 1013 and "capacity" in refused.message
    with urllib.request.urlopen(f"http://127.0.0.1:{ray_service}/healthz", timeout=5) as r:
        assert json.loads(r.read()) == {"status": "ok"}
