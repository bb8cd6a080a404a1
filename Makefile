# Two commands matter: `make run` and `make test`. Both bootstrap .venv from nothing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest fuzz fuzz-atheris bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,serve,bench]'
	touch $(STAMP)

# The Dia streaming service with the embedded synthetic voice; prints the URL to open.
run: $(STAMP)
	$(BIN)/diaproto serve --model synthetic $(ARGS)

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term-missing

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
	$(BIN)/python -m pip install --quiet -e '.[dev,serve,bench]'
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage
