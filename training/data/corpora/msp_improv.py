"""MSP-IMPROV: the official release (``Evalution.txt`` or ``Evaluation.txt`` for the consensus labels;
audio and video found by file name in either layout). Group = session, the 6 folds."""

from __future__ import annotations

import re
from pathlib import Path

from training.data.corpora import index_media, read_name_csv
from training.data.corpus import Utterance

# "UTD-IMPROV-S01A-F01-P-FM01.avi; N; A:3.000000; V:3.000000; D:3.000000 ; N:3.000000;"
_MSP_EVAL = re.compile(r"^UTD-IMPROV-(?P<name>[A-Z0-9-]+)\.avi;\s*(?P<emo>[A-Z]);")
# Name after "MSP-IMPROV-": S01A-F01-P-FM01 = sentence 01, acted emotion A, speaker F01 (gender F,
# session 01), scenario P (R read, S improvised, T target, P natural interaction), dyad FM01.
_MSP_NAME = re.compile(
    r"^S(?P<sentence>\d\d)(?P<acted>[A-Z])-(?P<speaker>[FM](?P<session>\d\d))-"
    r"(?P<scenario>[A-Z])-(?P<dyad>[A-Z]+\d\d)"
)
MSP_IMPROV_LABELS: dict[str, str] = {"A": "ang", "H": "hap", "N": "neu", "S": "sad"}


def list_msp_improv(
    root: Path, classes: dict[str, str] | None = None, scenarios: tuple[str, ...] | None = None
) -> list[Utterance]:
    """MSP-IMPROV utterances with a consensus label in ``classes`` (default A/H/N/S).

    ``scenarios`` keeps only recordings of those scenario letters (e.g. ("S", "P") drops read and target
    sentences); None keeps all. Transcripts are not part of the release: ``transcript`` is filled from an
    optional ``transcripts.csv`` (name,transcript) at the root, else None (the extractor then runs ASR).
    """
    root = Path(root)
    classes = MSP_IMPROV_LABELS if classes is None else classes
    eval_file = next((root / n for n in ("Evalution.txt", "Evaluation.txt") if (root / n).is_file()), None)
    if eval_file is None:
        raise FileNotFoundError(
            f"{root} does not look like the MSP-IMPROV release: no Evalution.txt / Evaluation.txt. "
            "MSP-IMPROV is licensed by the MSP lab, UT Dallas "
            "(ecs.utdallas.edu/research/researchlabs/msp-lab)."
        )
    transcripts = read_name_csv(root / "transcripts.csv", "transcript")
    audio = index_media(root, (".wav",))
    video = index_media(root, (".avi",))
    out: list[Utterance] = []
    seen: set[str] = set()
    for line in eval_file.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _MSP_EVAL.match(line.strip())
        if not m:
            continue  # rater lines ("Rater-1; Neutral; ...") and blank lines
        label = classes.get(m.group("emo"))
        name = m.group("name")
        parts = _MSP_NAME.match(name)
        if label is None or parts is None:
            continue
        if scenarios is not None and parts.group("scenario") not in scenarios:
            continue
        utt = f"MSP-IMPROV-{name}"
        if utt in seen:
            continue
        seen.add(utt)
        out.append(
            Utterance(
                id=utt,
                label=label,
                speaker=parts.group("speaker"),
                group=f"session{int(parts.group('session'))}",
                audio_path=audio.get(utt),
                video_path=video.get(utt),
                transcript=transcripts.get(utt),
                extra={
                    "scenario": parts.group("scenario"),
                    "acted": parts.group("acted"),
                    "sentence": parts.group("sentence"),
                    "raw_label": m.group("emo"),
                },
            )
        )
    return out
