"""Face expression models side by side: cost per face (torch and ONNX Runtime), training throughput and,
with ``--fer4``, FER2013 PrivateTest on the same engine crops.

    python -m benchmarks.face_models [--fer4 ../shared/data/fer2013-4class.npz] \
        [--denseface runs/denseface/denseface_fer4.safetensors] [--threads 2] [--json out/face_models.json]

Models: the shipped mini-Xception, DenseFace as the paper builds it (DenseNet-BC-100, k=12, 64x64) and
DenseFace with a strided stem (``stem_stride: 2``, the same 342-d feature). Per model and batch size
(1: one face per call, as a live frame; 8: a window's faces in one call): the median ms per face over
interleaved rounds, in torch and in ONNX Runtime (CPU), and the ratio to mini-Xception. Training: faces
per second of one SGD step on a batch of 64 (forward, backward, update), and the hours an epoch of the
21,005 FER2013 training faces would take at that rate.

``--fer4`` scores each model that has weights on PrivateTest (UAR, WAR), every face cropped by the
engine's own face path (``training.denseface.data``): mini-Xception's seven-class reading restricted to
ang/hap/neu/sad, as the engine reads it; DenseFace from ``--denseface`` when given.
"""

from __future__ import annotations

import argparse
import io
import statistics
from pathlib import Path
from typing import Any

import torch

from benchmarks.cpu_budget import median_ms
from benchmarks.report import emit

FER_TRAIN_FACES = 21_005


def _onnx_session(model: torch.nn.Module, threads: int):
    import onnxruntime as ort

    buf = io.BytesIO()
    x = torch.zeros(1, 1, 64, 64)
    torch.onnx.export(model, (x,), buf, input_names=["x"], output_names=["logits", "feature"],
                      dynamic_axes={"x": {0: "n"}}, dynamo=False)  # fmt: skip
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    # no spinning after a run: its idle threads would otherwise take the cores from the torch rounds
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])


def models() -> dict[str, torch.nn.Module]:
    from models.encoders.denseface import DenseFace, DenseFaceConfig
    from models.encoders.mini_xception import load_mini_xception

    torch.manual_seed(0)
    return {
        "mini_xception": load_mini_xception(None).eval(),
        "denseface_paper": DenseFace(DenseFaceConfig(num_classes=4)).eval(),
        "denseface_stride2": DenseFace(DenseFaceConfig(num_classes=4, stem_stride=2)).eval(),
    }


def cost(nets: dict[str, torch.nn.Module], threads: int, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sessions = {name: _onnx_session(m, threads) for name, m in nets.items()}
    for batch in (1, 8):
        x = torch.randn(batch, 1, 64, 64)
        xn = x.numpy()
        row: dict[str, Any] = {}
        for _ in range(3):  # interleaved rounds: the machine's drift hits every model alike
            for name, m in nets.items():
                with torch.inference_mode():
                    t = median_ms(lambda m=m, x=x: m(x), rounds) / batch
                o = median_ms(lambda name=name, xn=xn: sessions[name].run(None, {"x": xn}), rounds) / batch
                r = row.setdefault(name, {"torch": [], "onnxruntime": []})
                r["torch"].append(t)
                r["onnxruntime"].append(o)
        base = {k: statistics.median(row["mini_xception"][k]) for k in ("torch", "onnxruntime")}
        out[f"batch_{batch}"] = {
            name: {k: {"ms_per_face": round(statistics.median(v), 2),
                       "vs_mini_xception": round(statistics.median(v) / base[k], 2)} for k, v in r.items()}
            for name, r in row.items()
        }  # fmt: skip
    return out


def training_rate(nets: dict[str, torch.nn.Module], steps: int) -> dict[str, Any]:
    import torch.nn.functional as F

    out: dict[str, Any] = {}
    x, y = torch.randn(64, 1, 64, 64), torch.randint(0, 4, (64,))
    for name in ("denseface_paper", "denseface_stride2"):
        m = nets[name].train()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

        def step(m=m, opt=opt) -> None:
            loss = F.cross_entropy(m(x)[0], y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        ms = median_ms(step, steps)
        rate = 64_000.0 / ms
        out[name] = {"faces_per_s": round(rate, 1), "epoch_h": round(FER_TRAIN_FACES / rate / 3600, 2)}
        m.eval()
    return out


def private_test(npz: Path, denseface: Path | None) -> dict[str, Any]:
    from models.encoders.denseface import load_denseface, preprocess
    from models.encoders.mini_xception import MiniXceptionEmbedder
    from models.labels import FOUR_CLASSES
    from models.metrics import classification_metrics
    from training.denseface.data import load_fer4
    from training.fit.experts import FER_NAMES, FER_TO_CLASS

    splits, counts = load_fer4(npz, Path("runs/denseface/cache"))
    test = splits["test"]
    out: dict[str, Any] = {"faces": int(len(test.labels)), "fallback_crops_all_splits": counts["fallback"]}
    probs = MiniXceptionEmbedder()(test.images).probs
    cols = [FER_NAMES.index(FER_TO_CLASS[c]) for c in FOUR_CLASSES]
    m = classification_metrics(test.labels, probs[:, cols].argmax(1), 4)
    out["mini_xception"] = {"uar": round(m.uar, 4), "war": round(m.war, 4)}
    if denseface is not None:
        net = load_denseface(denseface)
        with torch.inference_mode():
            logits = torch.cat([net(preprocess(test.images[i : i + 256]))[0]
                                for i in range(0, len(test.images), 256)])  # fmt: skip
        m = classification_metrics(test.labels, logits.argmax(1).numpy(), 4)
        out["denseface"] = {"uar": round(m.uar, 4), "war": round(m.war, 4), "weights": str(denseface)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.face_models", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--fer4", type=Path, help="score PrivateTest on engine crops of this .npz")
    ap.add_argument("--denseface", type=Path, help="trained DenseFace weights to score next to mini-Xception")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    nets = models()
    report: dict[str, Any] = {"benchmark": "face_models", "threads": args.threads,
                              "target_ms_per_face": 10.0, "cost": cost(nets, args.threads, args.rounds),
                              "training": training_rate(nets, args.train_steps)}  # fmt: skip
    if args.fer4 is not None:
        report["fer2013_private_test"] = private_test(args.fer4, args.denseface)
    emit(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
