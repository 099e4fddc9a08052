# `make train` and `make test` create .venv on first use and install the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: train test test-all lint format benchmark accelerator-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

train: $(VENV)/.installed
	$(BIN)/jax-softmax train $(ARGS)

# The quick tier: no real MNIST, nothing that takes a second (about 2 minutes here).
test: $(VENV)/.installed
	$(BIN)/python -m pytest -m "not slow and not mnist"

# Everything, on two workers: what CI runs.
test-all: $(VENV)/.installed
	$(BIN)/python -m pytest -n 2 --dist worksteal

benchmark: $(VENV)/.installed
	$(BIN)/python scripts/benchmark.py $(ARGS)

# With the machine's own JAX, from the source tree: no install, no network.
DATA_DIR ?= $(JAX_SOFTMAX_DATA_DIR)
OUT ?= accelerator-check
accelerator-check:
	PYTHONPATH=. $(PYTHON) scripts/accelerator_check.py --data-dir $(DATA_DIR) --out $(OUT)

lint: $(VENV)/.installed
	$(BIN)/ruff check jax_softmax tests scripts
	$(BIN)/ruff format --check jax_softmax tests scripts

format: $(VENV)/.installed
	$(BIN)/ruff format jax_softmax tests scripts
	$(BIN)/ruff check --fix jax_softmax tests scripts

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
