# Two commands matter: `make run` and `make test`. Both bootstrap .venv from nothing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
# The tests run the real Dia code path on a tiny model on the CPU: pin torch's CPU build (a
# plain `pip install torch` on Linux pulls several GB of CUDA wheels). Elsewhere (macOS, or
# an index with another build) override it: make test TORCH=torch==2.13.0
TORCH ?= torch==2.13.0+cpu

.PHONY: run test lint typecheck pytest fuzz fuzz-atheris bench clean

# `make run` needs the service alone: the core, anyio/trio and prometheus_client.
$(RUN_STAMP): pyproject.toml
	@echo "make run: installing diaproto's service into $(VENV) (first run only)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[serve]'
	touch $(RUN_STAMP)

# Everything the tests, type check and benchmarks use, with torch's CPU build for Dia.
$(STAMP): pyproject.toml $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet '$(TORCH)'
	$(BIN)/python -m pip install --quiet -e '.[dev,serve,bench,dia]'
	touch $(STAMP)

# The Dia streaming service with the embedded synthetic voice; prints the URL to open.
run: $(RUN_STAMP)
	$(BIN)/diaproto serve --model synthetic $(ARGS)

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/python tools/typecheck_tree.py
	$(BIN)/mypy

# Line and branch coverage, gated per layer: the sans-IO core at 100%, the adapters and the
# applications at OUTER_COVERAGE (measured 91%; threads and timing make a point or two vary).
OUTER_COVERAGE ?= 89

pytest: $(STAMP)
	$(BIN)/python -m pytest --cov --cov-report=
	$(BIN)/coverage report --include='diaproto/*' --fail-under=100
	$(BIN)/coverage report --include='adapters/*,apps/*,cluster/*' --fail-under=$(OUTER_COVERAGE)

# A long fuzzing run of every harness in fuzz/ (hypothesis-driven; atheris where it installs).
fuzz: $(STAMP)
	$(BIN)/python -m fuzz --seconds $${FUZZ_SECONDS:-600}

# The same harnesses under coverage-guided libFuzzer (atheris installs from PyPI on Linux).
fuzz-atheris: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[fuzz]'
	$(BIN)/python -m fuzz --engine atheris --seconds $${FUZZ_SECONDS:-600}

# diaproto against its peers, side by side (quick set; ARGS=--full for the long one); rewrites
# docs/benchmarks.md, its plots and docs/benchmarks/results.json.
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage
