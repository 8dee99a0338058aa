"""Make the long-stream fixtures in ``tests/data/streams/`` (used by ``benchmarks/live_stream.py``).

    python tools/make_stream_fixtures.py                         # both fixtures into tests/data/streams
    python tools/make_stream_fixtures.py --only monologue        # or --only cremad
    python tools/make_stream_fixtures.py --out DIR               # elsewhere (DIR holds the monologue .txt)
    python tools/make_stream_fixtures.py --check                 # decode the fixtures, check A/V sync

- ``monologue_en_us.flac``: espeak-ng (voice en-us, 165 words per minute) reads ``monologue_en_us.txt``
  from the output folder; that text is the input and the reference transcript, so edit it there and
  rerun. espeak-ng writes 22050 Hz; the audio is resampled to 16 kHz mono (``resample_poly(x, 320, 441)``)
  and stored as 16-bit FLAC. Needs the ``espeak-ng`` program on PATH.
- ``cremad_1001_x5.mp4`` (+ ``.txt``, ``.json``): the six CREMA-D clips of actor 1001 in
  ``data/cremad/`` (ANG, DIS, FEA, HAP, NEU, SAD), that sequence five times, re-encoded with PyAV into one
  mp4: H.264 video (source size, 29.97 fps, yuv420p) and AAC 16 kHz mono audio. Each clip lasts as long
  as its audio; its video is resampled onto the output frame grid (the last frame repeated or the extra
  frames dropped) so that audio and video stay in sync, and the clips follow each other on one
  continuous timeline. The ``.txt`` has the sentence once per clip; the ``.json`` lists the clips with
  their label and start and end times (s).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

SR = 16000
MONOLOGUE = "monologue_en_us"
ESPEAK_VOICE = "en-us"
ESPEAK_WPM = 165
CREMAD = "cremad_1001_x5"
CREMAD_DIR = REPO / "data" / "cremad"
CREMAD_EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
CREMAD_SENTENCE = "Don't forget a jacket."
CREMAD_REPEATS = 5
FPS = Fraction(30000, 1001)  # the clips' 29.97 fps
VIDEO_CRF = 26
AUDIO_BITRATE = 32000


class FixtureError(RuntimeError):
    """A fixture cannot be made (missing program or input): the message says why."""


# --------------------------------------------------------------------------------------------------
# monologue (espeak-ng)
# --------------------------------------------------------------------------------------------------
def make_monologue(out: Path) -> Path:
    import soundfile as sf
    from scipy.signal import resample_poly

    text = out / f"{MONOLOGUE}.txt"
    if not text.is_file():
        raise FixtureError(f"{text} is missing: it is the text espeak-ng reads and the reference transcript")
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise FixtureError(
            "espeak-ng is not installed (not on PATH); install it (e.g. apt-get install espeak-ng) "
            "to make the monologue"
        )
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "monologue.wav"
        cmd = [espeak, "-v", ESPEAK_VOICE, "-s", str(ESPEAK_WPM), "-f", str(text), "-w", str(wav)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or not wav.is_file():
            raise FixtureError(f"espeak-ng failed (exit {r.returncode}): {r.stderr.strip()}")
        x, sr = sf.read(wav, dtype="float32", always_2d=True)
    if sr != 22050:
        raise FixtureError(f"espeak-ng wrote {sr} Hz, expected 22050 Hz")
    y = resample_poly(x.mean(axis=1), 320, 441).astype(np.float32)
    path = out / f"{MONOLOGUE}.flac"
    sf.write(path, np.clip(y, -1.0, 1.0), SR, subtype="PCM_16", format="FLAC")
    return path


# --------------------------------------------------------------------------------------------------
# CREMA-D sequence (PyAV)
# --------------------------------------------------------------------------------------------------
def read_clip(path: Path) -> tuple[np.ndarray, list[tuple[float, np.ndarray]]]:
    """The clip's audio as 16 kHz mono float32 and its video frames as (media time s, RGB array)."""
    import av
    from scipy.signal import resample_poly

    with av.open(str(path)) as c:
        frames = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].rate
        chunks = [f.to_ndarray().reshape(-1, f.samples).astype(np.float32) for f in c.decode(audio=0)]
    if not frames or not chunks:
        raise FixtureError(f"{path}: no video or no audio decoded")
    pcm = np.concatenate(chunks, axis=1).mean(axis=0)  # planar float -> mono
    if rate != SR:
        from math import gcd

        g = gcd(SR, rate)
        pcm = resample_poly(pcm, SR // g, rate // g)
    return np.clip(pcm, -1.0, 1.0).astype(np.float32), frames


def make_cremad(out: Path, repeats: int = CREMAD_REPEATS, crf: int = VIDEO_CRF) -> Path:
    import av

    clips = []
    for emo in CREMAD_EMOTIONS:
        name = f"1001_DFA_{emo}_XX"
        path = CREMAD_DIR / f"{name}.flv"
        if not path.is_file():
            raise FixtureError(f"{path} is missing")
        audio, frames = read_clip(path)
        clips.append((name, emo.lower(), audio, frames))
    h, w = clips[0][3][0][1].shape[:2]

    mp4 = out / f"{CREMAD}.mp4"
    order: list[dict[str, object]] = []
    with av.open(str(mp4), "w", format="mp4") as oc:
        vs = oc.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": str(crf), "preset": "medium"}
        vs.codec_context.time_base = 1 / FPS
        aus = oc.add_stream("aac", rate=SR, layout="mono")
        aus.bit_rate = AUDIO_BITRATE
        fmt = aus.codec_context.format.name  # the encoder's sample format (fltp)
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=SR)

        def mux(packets: object) -> None:
            for p in packets:
                oc.mux(p)

        n_samples = 0  # audio samples written so far = the start of the next clip
        n_frames = 0  # video frames written so far
        aac_frame = aus.codec_context.frame_size or 1024
        for rep in range(repeats):
            for k, (name, label, audio, frames) in enumerate(clips):
                t0 = n_samples / SR
                n_samples += audio.size
                t1 = n_samples / SR
                order.append({"clip": name, "label": label, "t_start": round(t0, 6), "t_end": round(t1, 6)})
                # audio: one AudioFrame per 1024 samples, pts in samples on the continuous timeline
                start = int(round(t0 * SR))
                for i in range(0, audio.size, 1024):
                    chunk = audio[i : i + 1024]
                    af = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                    af.sample_rate = SR
                    af.pts = start + i
                    af.time_base = Fraction(1, SR)
                    for rf in resampler.resample(af):
                        mux(aus.encode(rf))
                # video: frames on the output grid inside [t0, t1), each showing the source frame shown
                # at that clip time (the last one past the clip's video, the first one before it). The
                # last clip also covers the silence the AAC encoder pads its last frame with.
                src_t = np.array([t for t, _ in frames])
                last = rep == repeats - 1 and k == len(clips) - 1
                v_end = -(-n_samples // aac_frame) * aac_frame / SR if last else t1
                end_frame = int(np.ceil(v_end * FPS - 1e-9))
                while n_frames < end_frame:
                    local = float(n_frames / FPS) - t0
                    j = int(np.searchsorted(src_t, local + 1e-6, side="right")) - 1
                    vf = av.VideoFrame.from_ndarray(frames[max(j, 0)][1], format="rgb24").reformat(
                        format="yuv420p"
                    )
                    vf.pts = n_frames
                    vf.time_base = 1 / FPS
                    mux(vs.encode(vf))
                    n_frames += 1
        for rf in resampler.resample(None):
            mux(aus.encode(rf))
        mux(aus.encode(None))
        mux(vs.encode(None))

    (out / f"{CREMAD}.txt").write_text("".join(f"{CREMAD_SENTENCE}\n" for _ in order))
    (out / f"{CREMAD}.json").write_text(json.dumps(order, indent=1) + "\n")
    return mp4


# --------------------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------------------
def check(path: Path, max_gap_s: float = 0.1) -> bool:
    """Decode ``path`` with PyAV, print its audio (and video) duration; with video, the audio must end
    within ``max_gap_s`` of the last frame's timestamp."""
    import av

    with av.open(str(path)) as c:
        n, rate, first = 0, 0, None
        for f in c.decode(audio=0):
            first = float(f.pts * f.time_base) if first is None and f.pts is not None else first
            n, rate = n + f.samples, f.sample_rate
    audio_end = (first or 0.0) + n / rate if rate else 0.0
    line = f"{path}: audio {n / rate if rate else 0:.3f} s at {rate} Hz"
    with av.open(str(path)) as c:
        if not c.streams.video:
            print(line)
            return n > 0
        pts = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    gap = audio_end - pts[-1]
    ok = n > 0 and abs(gap) <= max_gap_s
    print(f"{line}; video {len(pts)} frames, last at {pts[-1]:.3f} s; audio end - last frame {gap:+.3f} s "
          f"({'ok' if ok else 'OUT OF SYNC'})")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/data/streams", help="output folder (default: %(default)s)")
    ap.add_argument("--only", choices=("monologue", "cremad"), help="make only this fixture")
    ap.add_argument("--repeats", type=int, default=CREMAD_REPEATS, help="CREMA-D sequence repeats")
    ap.add_argument("--crf", type=int, default=VIDEO_CRF, help="H.264 quality of the CREMA-D video")
    ap.add_argument("--check", action="store_true", help="decode the fixtures in --out, check A/V sync")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.check:
        names = {"monologue": [f"{MONOLOGUE}.flac"], "cremad": [f"{CREMAD}.mp4"]}
        files = [out / f for k, fs in names.items() if args.only in (None, k) for f in fs]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            print(f"make_stream_fixtures: error: missing {', '.join(missing)}", file=sys.stderr)
            return 2
        return 0 if all([check(f) for f in files]) else 1
    out.mkdir(parents=True, exist_ok=True)
    try:
        if args.only in (None, "monologue"):
            p = make_monologue(out)
            print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")
        if args.only in (None, "cremad"):
            p = make_cremad(out, args.repeats, args.crf)
            print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB), {CREMAD}.txt, {CREMAD}.json")
    except FixtureError as e:
        print(f"make_stream_fixtures: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
