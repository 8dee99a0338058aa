#!/usr/bin/env bash
# DenseFace on a GPU, for the `device` tool (run from the project root on the device machine). First,
# here, pack the crops the GPU box trains from (it has neither the stills nor the face detector):
#   python -m training.denseface_data ../shared/data/fer2013-4class.npz --pack runs/denseface/fer4-crops-jpeg.npz
# then run this with carry ["runs/denseface/fer4-crops-jpeg.npz"] (48 MB). It writes under $OUT:
#   amp-probe.log / fp32-probe.log  faces per second of one epoch with and without AMP (the paper's network);
#   denseface_fer4.safetensors      the paper's network (stem stride 1), 30 epochs, AMP;
#   denseface_fer4_s2.safetensors   the strided stem (stem stride 2), 30 epochs, AMP;
#   *.state.pt                      resumable states: carry them back and run again to go on.
# Each step is bounded, so one failure does not hide the others; the trainings stop after their epoch
# that passes TRAIN_MIN minutes and say so (the state then resumes them).
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
PACK=${PACK:-runs/denseface/fer4-crops-jpeg.npz}
EPOCHS=${EPOCHS:-30}; TRAIN_MIN=${TRAIN_MIN:-4}
step() { local name=$1 secs=$2; shift 2; echo "== $name"; timeout "$secs" "$@" >"$OUT/$name.log" 2>&1; echo "rc=$? ($name)"; tail -3 "$OUT/$name.log"; }
train() { python3 -m training.train_denseface --fer4 "$PACK" --device cuda --no-progress "$@"; }
step env 60 bash -c 'nvidia-smi --query-gpu=name,memory.total --format=csv; python3 -c "import torch;print(torch.__version__, torch.cuda.get_device_name(0))"'
step install 180 python3 -m pip install --no-deps --no-build-isolation -e .
step fp32-probe 120 train --epochs 1 --out "$OUT/probe_fp32.safetensors" --state "$OUT/probe_fp32.state.pt"
step amp-probe 120 train --epochs 1 --amp --out "$OUT/probe_amp.safetensors" --state "$OUT/probe_amp.state.pt"
step paper $((TRAIN_MIN * 60 + 90)) train --epochs "$EPOCHS" --amp --time-budget-min "$TRAIN_MIN" \
  --out "$OUT/denseface_fer4.safetensors" --state "$OUT/denseface_fer4.state.pt"
step stride2 $((TRAIN_MIN * 60 + 90)) train --epochs "$EPOCHS" --amp --stem-stride 2 --time-budget-min "$TRAIN_MIN" \
  --out "$OUT/denseface_fer4_s2.safetensors" --state "$OUT/denseface_fer4_s2.state.pt"
echo "done: see $OUT/"
