"""Word error rate, pure Python (no ``jiwer``).

    from benchmarks.wer import wer, wer_details
    wer("Don't forget a jacket.", "don't forget the jacket")      # 0.25
    prefix_wer("a b c d e f", "a b x")                             # 1/3: against "a b c"

Both texts are normalised the same way before they are compared: lower case; every character that is
not a letter, a digit or an apostrophe becomes a space (so "well-known" is two words); curly apostrophes
become straight ones, and apostrophes at the edge of a word (quote marks) are dropped, those inside it
("don't") kept. Numbers are not converted: "ten" and "10" are different words. The error rate is the
word-level Levenshtein distance (substitutions + deletions + insertions) divided by the number of
reference words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_NOT_WORD = re.compile(r"[^\w']+|_+")


def normalise(text: str | Sequence[str]) -> list[str]:
    """The words of ``text`` (a string, or a list of words joined with spaces) after normalisation."""
    if not isinstance(text, str):
        text = " ".join(text)
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    words = (w.strip("'") for w in _NOT_WORD.sub(" ", text).split())
    return [w for w in words if w]


def wer_details(ref: str | Sequence[str], hyp: str | Sequence[str]) -> dict[str, float | int]:
    """Levenshtein alignment of the normalised word lists: ``wer``, ``ref_words``, ``hyp_words``,
    ``substitutions``, ``deletions``, ``insertions``. Raises ValueError when the reference is empty."""
    r, h = normalise(ref), normalise(hyp)
    if not r:
        raise ValueError("empty reference: the word error rate is undefined")
    # one row of the edit-distance table; each cell is (cost, substitutions, deletions, insertions)
    row = [(j, 0, 0, j) for j in range(len(h) + 1)]
    for i, rw in enumerate(r, 1):
        diag, row[0] = row[0], (i, 0, i, 0)
        for j, hw in enumerate(h, 1):
            up, left = row[j], row[j - 1]
            cands = [
                (diag[0], diag[1], diag[2], diag[3])
                if rw == hw
                else (diag[0] + 1, diag[1] + 1, diag[2], diag[3]),
                (up[0] + 1, up[1], up[2] + 1, up[3]),  # reference word deleted
                (left[0] + 1, left[1], left[2], left[3] + 1),  # hypothesis word inserted
            ]
            diag, row[j] = up, min(cands)
    cost, sub, dele, ins = row[-1]
    return {
        "wer": cost / len(r),
        "ref_words": len(r),
        "hyp_words": len(h),
        "substitutions": sub,
        "deletions": dele,
        "insertions": ins,
    }


def wer(ref: str | Sequence[str], hyp: str | Sequence[str]) -> float:
    """Word error rate of ``hyp`` against ``ref`` (0 is perfect; it can exceed 1 with insertions)."""
    return float(wer_details(ref, hyp)["wer"])


def prefix_wer(ref: str | Sequence[str], hyp: str | Sequence[str]) -> dict[str, float | int]:
    """WER of ``hyp`` against the prefix of ``ref`` it matches best (fewest edits; ties: the longer
    prefix), for a stream stopped before its end: ``wer``, ``ref_words`` (the prefix), ``hyp_words``."""
    r, h = normalise(ref), normalise(hyp)
    if not r:
        raise ValueError("empty reference: the word error rate is undefined")
    # row over reference prefixes: distance between the hypothesis read so far and r[:i]
    row = list(range(len(r) + 1))
    for j, hw in enumerate(h, 1):
        diag, row[0] = row[0], j
        for i, rw in enumerate(r, 1):
            diag, row[i] = row[i], min(row[i] + 1, row[i - 1] + 1, diag + (rw != hw))
    n = min(range(1, len(r) + 1), key=lambda i: (row[i], -i))
    return {"wer": row[n] / n, "ref_words": n, "hyp_words": len(h)}
