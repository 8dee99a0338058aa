# The two commands a newcomer needs:
#   make demo   set up and run the main job offline (see README)
#   make test   set up and run the test suite
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo bench export clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# Pin torch first: an unpinned torch pulls several GB of CUDA packages on CPU machines.
	$(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev,train]" "$(TORCH_SPEC)"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) -m models.export --config configs/model/cmarr_offline.yaml --random-init --out out/cmarr_offline.onnx --verify

export: setup
	$(PY) -m models.export --config configs/model/cmarr.yaml --random-init --out out/cmarr.onnx --verify

bench: setup
	$(PY) benchmarks/fusion_latency.py

clean:
	rm -rf $(VENV) out .pytest_cache
