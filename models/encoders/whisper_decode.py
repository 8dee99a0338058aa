"""Window decoding for streaming recognition: a prompt, a forced prefix, greedy or beam search without
timestamp tokens, words timed by cross-attention alignment; several windows in one batched call.

Batching pays on the decoder, not on the encoder: measured on 2 CPU cores (tiny.en int8), one 4 s
window's greedy decode costs about 100 ms alone and about 30 ms in a batch of 8, while a batched encoder
pass costs what its windows cost one by one (``benchmarks/asr_batching.py``). A server's streams decode
through one ``engine.core.batched_asr.BatchingRecogniser``, which calls ``decode_windows`` with whatever
windows are waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Word:
    start: float  # seconds from the start of the transcribed audio
    end: float
    text: str  # as Whisper emits it, usually with a leading space
    probability: float


@dataclass
class WindowDecode:
    """One decoder pass over an encoded window."""

    words: list[Word]  # the words after the forced prefix; times relative to the window's first sample
    text: str  # their text
    avg_logprob: float  # mean token log-probability of the whole generated sequence
    no_speech_prob: float  # the model's probability of the no-speech token
    compression_ratio: float  # gzip ratio of the new text: high on repetition loops
    repeat_cut: bool = False  # a repetition loop was cut off
    prefix_kept: bool = True  # the decoder kept the forced prefix (False: the output did not start with it)


@dataclass
class DecodeRequest:
    """One window to decode: its encoder output [1, T, D], its length in samples, and the text around it.

    ``prompt``: text before the window (conditions the decoder). ``prefix``: text already committed
    inside the window; the decoder is forced to start with it, so only the words after it are new.
    ``max_new_tokens`` bounds the pass; a loop of any n-gram (n <= 8) repeated ``repeat_limit`` times in
    a row is cut after its first occurrence. ``prompt_tokens`` keeps the prompt's last tokens only:
    CTranslate2 batches windows only when their start-of-transcript token is at the same position, so a
    batching caller gives every window the same prompt length."""

    encoded: np.ndarray
    n_samples: int
    prompt: str | None = None
    prefix: str | None = None
    max_new_tokens: int = 64
    repeat_limit: int = 3
    prompt_tokens: int | None = None  # at most this many prompt tokens (None: half the text context)


def decode_windows(
    model: Any, tokenizer: Any, beam_size: int, requests: list[DecodeRequest]
) -> list[WindowDecode]:
    """Decode every request with faster-whisper ``model``; windows whose encoder outputs have the same
    shape and whose prompts the same length go through the decoder (and the alignment) in one batched
    call. Results in request order."""
    half = model.max_length // 2 - 1
    prompts = [_prompt_ids(tokenizer, r, half) for r in requests]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(requests):
        groups.setdefault((len(prompts[i]), *np.shape(r.encoded)[1:]), []).append(i)
    out: list[WindowDecode | None] = [None] * len(requests)
    for idx in groups.values():
        group = [requests[i] for i in idx]
        for i, d in zip(
            idx, _decode_group(model, tokenizer, beam_size, group, [prompts[i] for i in idx]), strict=True
        ):
            out[i] = d
    return [d for d in out if d is not None]


def _prompt_ids(tok: Any, r: DecodeRequest, half: int) -> list[int]:
    """The previous-text tokens (with their start token), or [] without a prompt."""
    if not (r.prompt and r.prompt.strip()):
        return []
    n = half if r.prompt_tokens is None else min(half, r.prompt_tokens)
    return [tok.sot_prev, *tok.encode(" " + r.prompt.strip())[-n:]] if n > 0 else []


def _decode_group(
    model: Any, tok: Any, beam_size: int, reqs: list[DecodeRequest], previous: list[list[int]]
) -> list[WindowDecode]:
    import ctranslate2
    from faster_whisper.transcribe import get_compression_ratio

    half = model.max_length // 2 - 1
    prompts, prefixes = [], []
    for r, prev in zip(reqs, previous, strict=True):
        ids = [*prev, *tok.sot_sequence, tok.no_timestamps]
        pre = tok.encode(" " + r.prefix.strip())[-half:] if r.prefix and r.prefix.strip() else []
        prompts.append(ids + pre)
        prefixes.append(pre)
    batch = np.ascontiguousarray(np.concatenate([np.asarray(r.encoded, np.float32) for r in reqs]))
    enc = ctranslate2.StorageView.from_array(batch)
    results = model.model.generate(
        enc,
        prompts,
        beam_size=beam_size,
        max_length=max(len(p) + r.max_new_tokens for p, r in zip(prompts, reqs, strict=True)),
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=[-1],
    )
    decoded = []
    for res, pre, r in zip(results, prefixes, reqs, strict=True):
        out = [t for t in res.sequences_ids[0] if t < tok.eot][: len(pre) + r.max_new_tokens]
        kept = out[: len(pre)] == pre
        gen = out[len(pre) :] if kept else out
        gen, cut = cut_repetition(gen, r.repeat_limit)
        decoded.append((pre if kept else [], gen, cut, kept or not pre, res))
    words = _align(model, tok, batch, reqs, [(pre, gen) for pre, gen, *_ in decoded])
    return [
        WindowDecode(
            w,
            (text := tok.decode(gen).strip()),
            float(res.scores[0]) if res.scores else 0.0,
            float(res.no_speech_prob),
            get_compression_ratio(text) if text else 0.0,
            cut,
            kept,
        )
        for w, (_, gen, cut, kept, res) in zip(words, decoded, strict=True)
    ]


def _align(
    model: Any,
    tok: Any,
    batch: np.ndarray,
    reqs: list[DecodeRequest],
    seqs: list[tuple[list[int], list[int]]],
) -> list[list[Word]]:
    """Word times of each request's new tokens, by cross-attention alignment over prefix + new tokens
    (faster-whisper's ``find_alignment``); requests of the same length are aligned in one call."""
    import ctranslate2
    from faster_whisper.transcribe import merge_punctuations

    words: list[list[Word]] = [[] for _ in reqs]
    by_frames: dict[int, list[int]] = {}
    for i, (r, (_, gen)) in enumerate(zip(reqs, seqs, strict=True)):
        if gen and r.n_samples // 160 > 0:
            by_frames.setdefault(r.n_samples // 160, []).append(i)
    for n_frames, idx in by_frames.items():
        enc = ctranslate2.StorageView.from_array(np.ascontiguousarray(batch[idx]))
        aligned = model.find_alignment(tok, [seqs[i][0] + seqs[i][1] for i in idx], enc, n_frames)
        for i, align in zip(idx, aligned, strict=True):
            merge_punctuations(align, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
            n_pre, used = len(seqs[i][0]), 0
            for w in align:
                start_tok, used = used, used + len(w["tokens"])
                if start_tok >= n_pre and w["word"].strip():
                    words[i].append(
                        Word(float(w["start"]), float(w["end"]), w["word"], float(w["probability"]))
                    )
    return words


def cut_repetition(tokens: list[int], limit: int) -> tuple[list[int], bool]:
    """Cut a decoding loop: where an n-gram (n <= 8) repeats ``limit`` times in a row, keep its first
    occurrence and drop the rest. Returns (tokens, whether anything was cut)."""
    if limit < 2:
        return tokens, False
    best = len(tokens)
    for n in range(1, 9):
        for i in range(0, len(tokens) - limit * n + 1):
            if i + n >= best:
                break
            gram = tokens[i : i + n]
            if all(tokens[i + k * n : i + (k + 1) * n] == gram for k in range(1, limit)):
                best = i + n
                break
    return tokens[:best], best < len(tokens)
