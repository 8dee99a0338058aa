"""Offline feature extraction: corpus -> feature store.

    python -m training.extract --corpus files --root data/cremad --out runs/features/cremad-offline \
        --extractors offline
    python -m training.extract --corpus ravdess --root <RAVDESS> --out runs/features/offline   # one store,
    python -m training.extract --corpus meld --root <MELD csvs> --out runs/features/offline    # many corpora
    python -m training.extract --corpus iemocap --root path/to/IEMOCAP_full_release \
        --out runs/features/iemocap-paper --extractors paper \
        --set face.weights=runs/denseface/denseface_ferplus.safetensors

Runs the same extractors as the live engine (``models.encoders``), one utterance at a time, and appends
to a resumable feature store (``training.data.feature_store``): rerunning the command after an interruption
skips what is already stored. Per utterance it stores

- text: token features [L, D_t] of the corpus transcript, or of the ASR transcript when the corpus has
  none (``--transcripts auto``); empty when there is no transcript and no audio;
- audio: speech frames [T, D_a]; empty [0, D_a] when the file has no audio track;
- video: one face feature per sampled frame [N, D_v] with a per-frame face-present flag (False rows are
  zero vectors); empty [0, D_v] when there is no video. A still face image (FER2013) becomes ``--views``
  frames through the same detection, crop and embedding (``training.data.face_views``).

Several corpora can share one store (ids and speakers are corpus-prefixed); each utterance's meta records
its corpus and official split, and the manifest lists the corpora added.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.encoders.audio import NoAudioStreamError, load_audio
from models.encoders.profile import Extractors, build_extractors, load_profile
from models.encoders.video import NoVideoStreamError, iter_frames
from models.labels import normalise_label
from training.data.corpus import Utterance, list_corpus
from training.data.face_views import still_views
from training.data.feature_store import FeatureStoreWriter

TRANSCRIPT_MODES = ("auto", "corpus", "asr")
FRAME_BATCH = 32  # face crops per forward pass
STILL_VIEWS = 6  # frames made from one still face image


@dataclass
class ExtractedUtterance:
    features: dict[str, np.ndarray]  # modality -> float32 [L, D]
    presence: dict[str, np.ndarray]  # modality -> bool [L]
    meta: dict[str, Any]


@dataclass
class ExtractSummary:
    added: int = 0
    skipped: int = 0  # already in the store (resume)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _empty(dim: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, dim), np.float32), np.zeros(0, bool)


def extract_utterance(
    ex: Extractors, utt: Utterance, transcripts: str = "auto", views: int = STILL_VIEWS
) -> ExtractedUtterance:
    """All three modalities of one utterance with the bundle's extractors."""
    if transcripts not in TRANSCRIPT_MODES:
        raise ValueError(f"transcripts must be one of {TRANSCRIPT_MODES}, got {transcripts!r}")
    dims = ex.dims
    meta: dict[str, Any] = {
        "label": utt.label,
        "speaker": utt.speaker,
        "group": utt.group,
        "corpus": utt.corpus,
        "split": utt.split,
    }
    meta.update({f"extra_{k}": v for k, v in utt.extra.items()})
    audio = _utterance_audio(utt)  # also the ASR input
    meta["audio_seconds"] = None if audio is None else round(len(audio) / 16000.0, 3)
    feats: dict[str, np.ndarray] = {}
    pres: dict[str, np.ndarray] = {}
    if audio is not None and len(audio) > 0:
        if hasattr(ex.speech, "reset"):
            ex.speech.reset()  # running normalisation: each utterance starts fresh
        x = ex.speech(audio)
        feats["audio"], pres["audio"] = x, np.ones(len(x), bool)
    else:
        feats["audio"], pres["audio"] = _empty(dims["audio"])
    text, source = _transcript(ex, utt, audio, transcripts)
    meta["transcript"], meta["transcript_source"] = text, source
    if text and text.strip():
        t = ex.text(text)
        feats["text"], pres["text"] = t, np.ones(len(t), bool)
    else:
        feats["text"], pres["text"] = _empty(dims["text"])
    vf, vp = _faces(ex, utt, views)
    if vf:
        feats["video"], pres["video"] = np.concatenate(vf), np.concatenate(vp)
    else:
        feats["video"], pres["video"] = _empty(dims["video"])
    meta["video_frames"] = int(len(pres["video"]))
    meta["face_rate"] = float(pres["video"].mean()) if len(pres["video"]) else None
    return ExtractedUtterance(feats, pres, meta)


def _utterance_audio(utt: Utterance) -> np.ndarray | None:
    """The utterance's audio at 16 kHz, or None when it has no audio stream."""
    if utt.audio_path is None:
        return None
    try:
        # start/end locate the utterance inside a whole-dialogue video (IEMOCAP's dialog/avi); they
        # apply to the audio only when the audio is that same file's track, not a per-utterance wav.
        same_file = utt.video_path is not None and Path(utt.audio_path) == Path(utt.video_path)
        span = (utt.start, utt.end) if same_file else (None, None)
        return load_audio(utt.audio_path, start=span[0], end=span[1])
    except NoAudioStreamError:
        return None


def _transcript(
    ex: Extractors, utt: Utterance, audio: np.ndarray | None, transcripts: str
) -> tuple[str | None, str | None]:
    """The words and where they came from: the corpus's transcript, or the engine's ASR on the audio."""
    if transcripts in ("auto", "corpus") and utt.transcript:
        return utt.transcript, "corpus"
    if transcripts in ("auto", "asr") and audio is not None and len(audio) > 0:
        return ex.asr.transcribe(audio).text, "asr"
    return None, None


def _faces(ex: Extractors, utt: Utterance, views: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Face features and presence per sampled frame (a still: its pseudo-video views), in batches."""
    if utt.image is not None:
        ex.face.reset()
        r = ex.face.extract(still_views(utt.image(), views, utt.id))
        return [r.features], [r.present]
    if utt.video_path is None:
        return [], []
    ex.face.reset()
    vf: list[np.ndarray] = []
    vp: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    try:
        for frame in iter_frames(utt.video_path, ex.profile.face.fps, utt.start, utt.end):
            batch.append(frame.rgb)
            if len(batch) == FRAME_BATCH:
                r = ex.face.extract(batch)
                vf.append(r.features)
                vp.append(r.present)
                batch = []
        if batch:
            r = ex.face.extract(batch)
            vf.append(r.features)
            vp.append(r.present)
    except NoVideoStreamError:
        return [], []
    return vf, vp


def store_manifest(ex: Extractors, corpus: str, root: str | Path, transcripts: str) -> dict[str, Any]:
    """What produced a store's features. ``corpora`` (one entry per extraction run) is merged when more
    corpora are added to the same store; everything else must match the store's manifest."""
    desc = ex.describe()
    return {
        "extractors": desc,
        "dims": desc["dims"],
        "frame_rates": desc["frame_rates"],
        "corpora": [
            {
                "kind": corpus,
                "root_name": Path(root).name,
                "transcripts": transcripts,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
        ],
    }


def extract_corpus(
    utterances: Sequence[Utterance],
    ex: Extractors,
    out: str | Path,
    manifest: dict[str, Any],
    transcripts: str = "auto",
    progress: bool = True,
    fail_fast: bool = False,
    shard_size: int = 32,
    views: int = STILL_VIEWS,
) -> ExtractSummary:
    """Extract every utterance not yet in the store at ``out``; returns counts and failed ids."""
    summary = ExtractSummary()
    t0 = time.perf_counter()
    with FeatureStoreWriter(out, manifest, shard_size=shard_size) as store:
        todo = [u for u in utterances if not store.has(u.id)]
        summary.skipped = len(utterances) - len(todo)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(utterances), initial=summary.skipped, unit="utt", desc="extract")
        for utt in todo:
            try:
                r = extract_utterance(ex, utt, transcripts, views)
            except Exception as e:  # one broken file must not stop a corpus run; it is reported
                if fail_fast:
                    raise
                print(f"extract: {utt.id}: {type(e).__name__}: {e}", file=sys.stderr)
                summary.failed.append(utt.id)
            else:
                store.add(utt.id, r.features, r.presence, r.meta)
                summary.added += 1
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m training.extract",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--corpus",
        required=True,
        help="ravdess | emodb | meld | fer2013 | cremad | iemocap | msp-improv | files",
    )
    ap.add_argument("--root", required=True, type=Path, help="corpus folder")
    ap.add_argument("--out", required=True, type=Path, help="feature store folder (created or resumed)")
    ap.add_argument("--extractors", default="offline", help="profile name (offline, paper) or YAML path")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="profile override, e.g. face.fps=10 or text.allow_download=true (repeatable)",
    )
    ap.add_argument(
        "--transcripts",
        choices=TRANSCRIPT_MODES,
        default="auto",
        help="auto: corpus transcript, else ASR; corpus: never ASR; asr: always ASR",
    )
    ap.add_argument("--limit", type=int, default=None, help="only the first N utterances (a quick look)")
    ap.add_argument(
        "--labels",
        default=None,
        help="comma-separated labels to keep, e.g. ang,hap,neu,sad (default: every utterance)",
    )
    ap.add_argument(
        "--views", type=int, default=STILL_VIEWS, help="frames made from each still face image (FER2013)"
    )
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    ap.add_argument("--fail-fast", action="store_true", help="stop at the first failing utterance")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    profile = load_profile(args.extractors, args.overrides)
    utterances = list_corpus(args.corpus, args.root)
    if args.labels:
        keep = {normalise_label(x) for x in args.labels.split(",")}
        utterances = [u for u in utterances if normalise_label(u.label) in keep]
    if args.limit is not None:
        utterances = utterances[: args.limit]
    if not utterances:
        print(f"extract: no utterances found in {args.root} ({args.corpus})", file=sys.stderr)
        return 2
    ex = build_extractors(profile)
    try:
        manifest = store_manifest(ex, args.corpus, args.root, args.transcripts)
        manifest["command"] = " ".join(["python -m training.extract", *(argv or sys.argv[1:])])
        s = extract_corpus(
            utterances,
            ex,
            args.out,
            manifest,
            args.transcripts,
            not args.no_progress,
            args.fail_fast,
            views=args.views,
        )
    finally:
        ex.close()
    print(
        f"extract: {s.added} added, {s.skipped} already stored, {len(s.failed)} failed, "
        f"{s.seconds:.1f} s -> {args.out}"
    )
    if s.failed:
        print("extract: failed: " + ", ".join(s.failed), file=sys.stderr)
        return 1
    return 0
