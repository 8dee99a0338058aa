# The two commands a newcomer needs:
#   make demo   set up and replay a bundled real CREMA-D clip through the engine (offline)
#   make test   set up and run the test suite
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Labelled corpora for train-offline (RAVDESS, EmoDB, MELD, FER2013, CREMA-D; see training/recipe/reproduce.py).
DATA ?= ../shared/data

.PHONY: setup test demo serve bench bench-engine export train-offline train-cider clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# Pin torch first: an unpinned torch pulls several GB of CUDA packages on CPU machines.
	$(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev,train,serve]" "$(TORCH_SPEC)"
	# Export the shipped model's fusion graph now, not on the first run (engine/prepare.py).
	$(PY) -m engine.prepare
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) run_live.py --demo

# The streaming service on 127.0.0.1:8765 (docs/serve.md); it prints the live page's URL once ready.
# Clients: a browser at that URL, run_live.py --server, engine.tools.client.
serve: setup
	@echo "the live page will be at http://127.0.0.1:8765/ once the models are loaded"
	$(PY) -m engine.serve

# Reproduce the shipped model from DATA (about an hour and a half on 2 CPU cores; see its model card),
# then copy it and its card into models/assets/.
train-offline: setup
	$(PY) -m training.reproduce --data $(DATA) --out runs/offline-v3 --ship

# The shipped CIDer (run_live.py --model cider) from the same corpora and feature store: its training,
# the speaker folds and the engine evaluation, then models/assets/cider_offline_v1.{safetensors,md}.
train-cider: setup
	$(PY) -m training.reproduce --data $(DATA) --out runs/cider-v1 --store runs/offline-v3/features \
		--config configs/train/cider_offline.yaml --asset cider_offline_v1 --no-ablation --ship

export: setup
	$(PY) -m models.export --config configs/model/cmarr.yaml --random-init --out out/cmarr.onnx --verify

bench: setup
	$(PY) benchmarks/fusion_latency.py

bench-engine: setup
	$(PY) benchmarks/engine_replay.py

clean:
	rm -rf $(VENV) out .pytest_cache
