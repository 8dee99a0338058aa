"""The network service: ``python -m engine.serve`` (FastAPI + uvicorn), one WebSocket per stream, many
streams per process sharing the loaded models, admission control and Prometheus metrics; and its Ray
Serve application for more than one machine (``engine/serve/ray_app.py``). Protocol: docs/serve.md."""
