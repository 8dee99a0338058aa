"""Multi-process data parallel training: torchrun, 2 processes, gloo backend on CPU."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import REPO, TINY_MODEL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_gloo(store: Path, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent("""
        import json, sys
        import torch, torch.distributed as dist
        import training.loop.parts as tl
        import training.loop.train as tt
        store, out, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
        torch.set_num_threads(1)
        built = {}
        real_build = tl.build_model
        def spy(cfg, splits):
            adapter, model, mcfg = real_build(cfg, splits)
            built["model"] = model
            return adapter, model, mcfg
        tl.build_model = spy  # the training loop builds the model
        cfg = tt.load_train_config("configs/train/cmarr_iemocap.yaml", overrides, root=store)
        res = tt.train(cfg, out, device="cpu", evaluate_test=False)
        flat = torch.cat([p.detach().flatten() for p in built["model"].parameters()])
        info = {"rank": dist.get_rank(), "world": dist.get_world_size(), "epochs": res.epochs_run,
                "checksum": float(flat.double().sum()), "abs": float(flat.double().abs().sum()),
                "steps": int(len(res.history)), "first8": flat[:8].tolist()}
        json.dump(info, open(f"{out}/rank{dist.get_rank()}.json", "w"))
        dist.destroy_process_group()
    """)
    )
    out = tmp_path / "ddp"
    overrides = [
        *TINY_MODEL,
        "data.test_group=Session3",
        "data.val_fraction=0.25",
        "data.num_workers=0",
        "optim.lr=3.0e-3",
        "optim.batch_size=8",
        "optim.epochs=2",
        "early_stopping_patience=0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(script),
        str(store),
        str(out),
        json.dumps(overrides),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((out / "rank0.json").read_text())
    r1 = json.loads((out / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2 and {r0["rank"], r1["rank"]} == {0, 1}
    assert r0["epochs"] == r1["epochs"] == 2
    # gradients were all-reduced: both replicas hold the same weights after training ...
    assert r0["first8"] == r1["first8"] and r0["checksum"] == r1["checksum"]
    # only rank 0 writes the run's files
    assert (out / "best.safetensors").is_file() and (out / "metrics.csv").is_file()
