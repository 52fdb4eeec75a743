# The project's front door: `make run` and `make test` work on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
SRC := src tests loadtests deploy
# promtool checks and unit-tests the alerting rules; without one on PATH, `make promtool`
# takes it out of Debian's prometheus package into this git-ignored directory.
TOOLS := .tools
PROMTOOL := $(TOOLS)/bin/promtool
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links --no-emit-trusted-host

.PHONY: install dev run test lint format typecheck bench bench-mlserver train-default-model clean promtool lock

# setup.py builds the C modules (optional: skipped without a compiler); their sources are
# prerequisites so that an edit rebuilds them.
$(RUNTIME_STAMP): pyproject.toml setup.py src/bidder/recording/_speedups.c \
		src/bidder/scoring/_rowwise.c
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
test: lint promtool
	$(BIN)/pytest

promtool:
	@if command -v promtool >/dev/null 2>&1 || [ -x $(PROMTOOL) ]; then exit 0; fi; \
	set -e; rm -rf $(TOOLS)/deb; mkdir -p $(TOOLS)/deb $(TOOLS)/bin; cd $(TOOLS)/deb; \
	apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; \
	dpkg-deb -x prometheus_*.deb root; \
	mv root/usr/bin/promtool ../bin/promtool; cd ..; rm -rf deb

# The images install only these pins, hashes checked; pip-compile keeps existing pins
# (`make lock LOCK_FLAGS+=--upgrade` moves them to the newest allowed).
lock: $(DEV_STAMP)
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile $(LOCK_FLAGS) --extra fast \
		--output-file requirements/runtime.lock pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile $(LOCK_FLAGS) --only-build-deps \
		--build-deps-for wheel --output-file requirements/build.lock pyproject.toml

bench: $(DEV_STAMP)
	$(BIN)/python -m loadtests.bench

# MLServer pins FastAPI below the project's and brings its own XGBoost, so it gets its own
# git-ignored virtualenv. XGBoost 2.1 is the last release that reads the seed model's
# legacy binary format, which the benchmark converts to XGBoost JSON for MLServer.
# httptools: uvicorn's fast HTTP parser, which the model server uses too. uvloop 0.21:
# MLServer's inference workers call asyncio.get_event_loop(), which newer uvloops refuse.
MLSERVER_VENV := .venv-mlserver
MLSERVER_PINS := mlserver==1.7.1 mlserver-xgboost==1.7.1 xgboost==2.1.4 httptools==0.9.0 \
	uvloop==0.21.0
MLSERVER_STAMP := $(MLSERVER_VENV)/.installed-mlserver-1.7.1-xgboost-2.1.4-uvloop-0.21

$(MLSERVER_STAMP):
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MLSERVER_VENV)/bin/python -m pip install --quiet $(MLSERVER_PINS)
	touch $@

bench-mlserver: $(DEV_STAMP) $(MLSERVER_STAMP)
	$(BIN)/python -m loadtests.mlserver_bench --mlserver-venv $(MLSERVER_VENV)

train-default-model: $(DEV_STAMP)
	$(BIN)/bidder train --out src/bidder/defaults/model

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
