# Every target sets up its own environment (.venv) when it is missing or stale.
# Installs are pinned by constraints.txt (regenerate it with `make lock`).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet -c constraints.txt
# The large download shows pip's progress bars (and what it collects) instead of a silent wait.
PIP_PROGRESS := $(BIN)/python -m pip install --progress-bar on -c constraints.txt
# A matching torch/torchvision pair; the CUDA build also runs on CPU.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: setup run test test-all lint bench docs docs-check lock clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt Makefile
	@echo "== dlrun setup: a virtual environment in $(VENV), made once (later make commands reuse it)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "== dlrun setup: torch and torchvision ($(TORCH_PINS)), the CUDA build, which also runs on CPU:"
	@echo "   about 4.5 GB installed with its NVIDIA libraries, the one large download"
	$(PIP_PROGRESS) $(TORCH_PINS)
	@echo "== dlrun setup: dlrun and what it runs with: Hydra, scikit-learn, matplotlib, rich (the runs),"
	@echo "   Optuna and submitit (sweeps), MLflow and W&B (tracking), h5py and webdataset (data files), timm (models), schedulefree (optimizer), pytest and ruff (the tests)"
	$(PIP) -e ".[dev,sweep,tracking,wandb,hdf5,webdataset,timm,schedulefree]"
	touch $@
	@echo "== dlrun setup: done; .venv/bin/dlrun is the command"

run: setup
	$(BIN)/dlrun

# The fast lane: in-process composition and validation, unit tests, a handful of real-CLI runs.
test: setup
	$(BIN)/python -m pytest -q -n 2 -m "not slow"

# Everything: adds signals, sweeps, DDP, docs, benchmark smoke, packaging and the browser.
test-all: setup lint
	$(BIN)/python -m pytest -q -n 2 --durations=25

lint: setup
	$(BIN)/ruff check src tests bench docs

bench: setup
	$(PIP) -e ".[bench]"
	$(BIN)/python bench/loop_overhead.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/time_to_result.py
	$(BIN)/python bench/scaling.py
	$(BIN)/python bench/input_pipeline.py
	$(BIN)/python bench/csv_reading.py
	-$(BIN)/python bench/gpu.py  # exits 2, saying so, where there is no GPU

# The guide's tables: regenerate them all from full runs (minutes), or check that they reproduce.
docs: setup
	$(BIN)/python docs/results.py

docs-check: setup
	$(BIN)/python docs/results.py --check

# Resolve every dependency afresh (all extras) in a scratch environment and pin the result.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet $(TORCH_PINS)
	.lock-venv/bin/python -m pip install --quiet -e ".[dev,sweep,tracking,wandb,hdf5,webdataset,timm,schedulefree,bench,onnx,tensorboard]"
	(echo "# Pinned versions of every dependency; regenerate with: make lock"; \
	 .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v -i '^dlrun') > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) build src/*.egg-info
