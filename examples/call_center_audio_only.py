"""Call-center style embedding: audio only, pushed by the application with its own timestamps.

A telephony stack delivers 8 kHz mono packets every 20 ms. The engine resamples them, runs VAD and
streaming ASR, marks video as missing (CM-ARR reconstructs it from speech and text) and hands each
window's event to a callback. Here a bundled recording stands in for the phone line.

    python examples/call_center_audio_only.py [--wav PATH] [--realtime]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import EmotionEvent, Engine, load_engine_config  # noqa: E402
from engine.sinks import CallbackSink  # noqa: E402
from engine.sources import PushSource  # noqa: E402
from models.encoders.audio import load_audio  # noqa: E402


def on_event(ev: EmotionEvent) -> None:
    states = " ".join(f"{m}={h.state}" for m, h in ev.modalities.items())
    probs = " ".join(f"{k}={v:.2f}" for k, v in (ev.probs or {}).items())
    print(f"[{ev.t_start:5.1f}-{ev.t_end:5.1f}s] #{ev.seq} {ev.label} ({probs}) {states} | {ev.transcript!r}")


def phone_line(eng: Engine, wav: Path, realtime: bool) -> None:
    """The telephony thread: 20 ms packets of 8 kHz audio with media timestamps."""
    pcm = load_audio(wav, sr=8000)
    packet = 160
    t0 = time.monotonic()
    for i in range(0, len(pcm), packet):
        eng.push_audio(pcm[i : i + packet], 8000, i / 8000)
        if realtime:
            time.sleep(max(0.0, t0 + (i + packet) / 8000 - time.monotonic()))
    eng.end_of_stream()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wav", default=str(ROOT / "data" / "cremad" / "wav16k" / "1001_DFA_SAD_XX.wav"))
    ap.add_argument("--realtime", action="store_true", help="pace the packets like a live call")
    args = ap.parse_args()
    cfg = load_engine_config(ROOT / "configs" / "engine" / "default.yaml")
    eng = Engine(cfg, sources=[PushSource(video=False, name="phone")], sinks=[CallbackSink(on_event)],
                 keep_events=False)
    async with eng:
        line = threading.Thread(target=phone_line, args=(eng, Path(args.wav), args.realtime), daemon=True)
        line.start()
        await eng.wait()
        line.join()


if __name__ == "__main__":
    asyncio.run(main())
