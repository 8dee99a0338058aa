"""The LocalAgreement streaming policy with a scripted recogniser (deterministic, no model)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.config import ASRStreamConfig
from engine.stages.asr_policy import SR, LocalAgreementPolicy

SCRIPT = [
    ("don't", 0.5, 0.8),
    ("forget", 0.8, 1.1),
    ("a", 1.1, 1.2),
    ("jacket", 1.2, 1.7),
    ("please", 2.4, 2.9),
    ("now", 3.1, 3.4),
]


@dataclass
class W:
    start: float
    end: float
    text: str
    probability: float = 0.9


@dataclass
class R:
    words: list[W]


def clock_audio(t0: float, n: int) -> np.ndarray:
    """Audio whose samples encode their own media time (so the fake knows where its buffer starts)."""
    return (t0 + np.arange(n) / SR).astype(np.float32) / 1000.0


class ScriptedASR:
    """Hears the scripted words inside its buffer; a word ending in the last 0.3 s is misheard."""

    def __init__(self, script=SCRIPT, flaky: bool = False) -> None:  # noqa: ANN001
        self.script, self.flaky, self.calls, self.prompts = script, flaky, 0, []

    def transcribe(self, audio: np.ndarray, prompt: str | None = None) -> R:
        self.calls += 1
        self.prompts.append(prompt)
        t0 = float(audio[0]) * 1000.0
        t1 = t0 + len(audio) / SR
        out = []
        for text, a, b in self.script:
            if a >= t0 - 1e-3 and b <= t1 + 1e-3:
                if b > t1 - 0.3 or (self.flaky and self.calls % 2):
                    text = "mis" + text  # unstable edge / a recogniser that keeps changing its mind
                out.append(W(a - t0, b - t0, " " + text))
        return R(out)


def feed(policy: LocalAgreementPolicy, seconds: float, chunk: int = 512) -> list:
    commits = []
    n = int(seconds * SR)
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        policy.insert_audio(clock_audio(i / SR, m), i / SR)
        if policy.ready():
            upd = policy.process_iter()
            commits.append((round(upd.processed_until, 2), [w.text for w in upd.committed]))
    return commits


def test_local_agreement_commits_after_two_agreeing_passes() -> None:
    asr = ScriptedASR()
    p = LocalAgreementPolicy(asr, ASRStreamConfig(step_s=0.5, agreement=2))
    commits = feed(p, 3.8, chunk=500)  # passes at 0.5, 1.0, 1.5, ... s
    # 1.0 s: "misdon't" (at the edge, misheard); 1.5 s: "don't forget a"; 2.0 s: "don't forget a jacket".
    # The first two passes disagree, so the first commit is at 2.0 s: the prefix both last passes share.
    assert commits[:4] == [(0.5, []), (1.0, []), (1.5, []), (2.0, ["don't", "forget", "a"])]
    rest = p.finish()
    texts = [w.text for w in p.committed]
    assert texts == [w[0] for w in SCRIPT]
    assert [w.text for w in rest][-1] == "now"
    assert all(w.committed for w in p.committed)
    # absolute media timestamps survive buffer trimming
    assert [(w.start, w.end) for w in p.committed] == [(a, b) for _, a, b in SCRIPT]
    # the prompt never repeats words that are still inside the buffer
    assert all(pr is None or "jacket" not in pr or p.buffer_start >= 1.7 for pr in asr.prompts)


def test_lag_is_bounded_when_hypotheses_never_agree() -> None:
    script = [(f"w{i}", 0.2 + 0.5 * i, 0.6 + 0.5 * i) for i in range(40)]
    asr = ScriptedASR(script, flaky=True)
    cfg = ASRStreamConfig(step_s=0.5, agreement=2, max_buffer_s=4.0)
    p = LocalAgreementPolicy(asr, cfg)
    n = int(20 * SR)
    longest = 0.0
    for i in range(0, n, 512):
        p.insert_audio(clock_audio(i / SR, 512), i / SR)
        if p.ready():
            p.process_iter()
            longest = max(longest, p.buffer_end - p.buffer_start)
            if p.buffer_end > 8:  # once running, committed words trail the audio by a bounded lag
                assert p.committed and p.buffer_end - p.committed[-1].end <= cfg.max_buffer_s + cfg.step_s
    assert longest <= cfg.max_buffer_s + cfg.step_s + 0.05
    assert len(p.committed) >= 25


def test_silence_keeps_buffer_bounded_and_errors_reset() -> None:
    p = LocalAgreementPolicy(ScriptedASR([]), ASRStreamConfig(step_s=0.5, max_buffer_s=3.0))
    feed(p, 10.0)
    assert p.committed == [] and p.buffer_end - p.buffer_start <= 3.5
    p.on_error()
    assert p.buffer_end - p.buffer_start <= 0.5 + 1e-6 and p.tentative() == []


def test_gap_finishes_the_utterance() -> None:
    p = LocalAgreementPolicy(ScriptedASR(), ASRStreamConfig(step_s=0.5))
    feed(p, 2.2)
    before = len(p.committed)
    flushed = p.insert_audio(clock_audio(5.0, 512), 5.0)  # 2.8 s dropout
    assert "jacket" in [w.text for w in flushed]
    assert p.committed[before:] == flushed  # returned once, recorded once
    assert p.buffer_start == 5.0
