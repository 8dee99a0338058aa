"""Robot-style embedding: the robot owns its camera and microphone and pushes frames and audio itself.

The robot's control loop already grabs RGB frames and audio blocks with its own clock; it passes
them to the engine with those timestamps and reads events with ``async for``. Here the frames and
audio of a bundled clip stand in for the robot's sensors, and a few frames are blanked to show the
video light going amber (reconstructed) while the face is lost.

    python examples/robot_push_frames.py [--video PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine import Engine, load_engine_config  # noqa: E402
from models.encoders.audio import load_audio  # noqa: E402
from models.encoders.video import iter_frames  # noqa: E402


async def feed(eng: Engine, video: Path) -> None:
    """The robot's sensor loop: interleaved 33 ms audio blocks and frames, paced at real time."""
    audio = load_audio(video, sr=16000)
    frames = list(iter_frames(video))
    block = 528  # 33 ms at 16 kHz
    pos = 0
    for fr in frames:
        while pos / 16000 <= fr.time and pos < len(audio):
            eng.push_audio(audio[pos : pos + block], 16000, pos / 16000)
            pos += block
        rgb = fr.rgb if not (1.0 <= fr.time < 2.0) else np.zeros_like(fr.rgb)  # lens covered for 1 s
        eng.push_frame(rgb, fr.time)
        await asyncio.sleep(1 / 30)
    if pos < len(audio):
        eng.push_audio(audio[pos:], 16000, pos / 16000)
    eng.end_of_stream()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=str(ROOT / "data" / "cremad" / "1001_DFA_HAP_XX.flv"))
    args = ap.parse_args()
    cfg = load_engine_config(ROOT / "configs" / "engine" / "default.yaml", ["window.window_s=1.0",
                                                                          "window.hop_s=0.5"])
    async with Engine(cfg) as eng:  # no sources given: the engine takes pushed media
        feeder = asyncio.create_task(feed(eng, Path(args.video)))
        async for ev in eng.events():
            lights = " ".join(f"{m}:{h.state}" + (f"({h.reason})" if h.reason else "")
                              for m, h in ev.modalities.items())
            expert = ev.experts.get("face")
            print(f"#{ev.seq} {ev.t_start:.1f}-{ev.t_end:.1f}s fused={ev.label} face-expert="
                  f"{expert.label if expert else '-'} {lights}")
        await feeder


if __name__ == "__main__":
    asyncio.run(main())
