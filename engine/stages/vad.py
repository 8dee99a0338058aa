"""Voice activity with silero-vad's packaged ONNX model (offline; ships inside the silero-vad wheel).

Streaming: 512-sample chunks (32 ms at 16 kHz) with the model's 64-sample context and recurrent state
carried between calls, as silero's own wrapper does. ``process`` returns one speech probability per
complete chunk with the chunk's media start time.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass

import numpy as np

CHUNK = 512  # samples per model call at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk prepended to each call


def silero_onnx_path() -> str:
    try:
        ref = importlib.resources.files("silero_vad") / "data" / "silero_vad.onnx"
    except ModuleNotFoundError as e:
        raise RuntimeError("silero-vad is not installed: pip install silero-vad") from e
    if not ref.is_file():
        raise RuntimeError(f"silero-vad is installed but its packaged model is missing ({ref})")
    return str(ref)


@dataclass
class SpeechProb:
    t: float  # media time of the chunk's first sample (s)
    prob: float  # speech probability in [0, 1]


class SileroVAD:
    sample_rate = 16000

    def __init__(self, threads: int = 1) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            silero_onnx_path(), sess_options=so, providers=["CPUExecutionProvider"]
        )
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros((1, CONTEXT), np.float32)
        self._buf = np.zeros(0, np.float32)
        self._t: float | None = None  # media time of _buf[0]

    def process(self, pcm: np.ndarray, t: float) -> list[SpeechProb]:
        """Feed 16 kHz mono ``pcm`` starting at media time ``t``; returns the probabilities of the chunks
        completed by it. A gap in time (dropout) restarts the chunking at ``t``."""
        pcm = np.asarray(pcm, np.float32)
        if self._t is None or abs(self._t + len(self._buf) / self.sample_rate - t) > 1e-3:
            self._buf, self._t = np.zeros(0, np.float32), t
        self._buf = np.concatenate([self._buf, pcm])
        out: list[SpeechProb] = []
        sr = np.array(self.sample_rate, dtype=np.int64)
        while len(self._buf) >= CHUNK:
            chunk = self._buf[:CHUNK][None, :]
            x = np.concatenate([self._context, chunk], axis=1)
            prob, self._state = self.session.run(None, {"input": x, "state": self._state, "sr": sr})
            self._context = x[:, -CONTEXT:]
            out.append(SpeechProb(float(self._t), float(prob.reshape(-1)[0])))
            self._buf = self._buf[CHUNK:]
            self._t += CHUNK / self.sample_rate
        return out
