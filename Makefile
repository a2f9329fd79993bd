# Every target sets up its own environment (.venv) when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# A matching torch/torchvision pair; the CUDA build also runs on CPU.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: setup run test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PINS)
	$(BIN)/python -m pip install --quiet -e ".[dev,sweep]"
	touch $@

run: setup
	$(BIN)/dlrun

test: setup
	$(BIN)/python -m pytest -q -n 2

bench: setup
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python bench/loop_overhead.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/gpu.py

clean:
	rm -rf $(VENV) build src/*.egg-info
