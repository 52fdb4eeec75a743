# The project's front door: `make run` and `make test` work on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
SRC := src tests loadtests

.PHONY: install dev run test lint format typecheck bench train-default-model clean

$(RUNTIME_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(RUNTIME_STAMP)

dev: $(DEV_STAMP)

run: $(RUNTIME_STAMP)
	$(BIN)/bidder serve

lint: $(DEV_STAMP)
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/mypy

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix $(SRC)
	$(BIN)/ruff format $(SRC)

# pytest exits 5 when it collects no test; make treats any non-zero exit as a failure.
test: lint
	$(BIN)/pytest

bench: $(DEV_STAMP)
	$(BIN)/python -m loadtests.bench

train-default-model: $(DEV_STAMP)
	$(BIN)/bidder train --out src/bidder/defaults/model

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
