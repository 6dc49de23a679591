# Two entry points: `make up` runs Artesian, `make test` passes the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: up test test-fast lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

up: $(VENV)/.installed
	$(BIN)/artesian up

# pytest-xdist, a test file per worker at a time, one worker more than there are cores: most
# tests wait on broker processes and clients (the suite keeps two cores about 80 % busy with
# three workers), and the third cuts it from about 600 s to 500 s on two cores.
WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))
PYTEST := $(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile

test: $(VENV)/.installed-dev
	$(PYTEST)

test-fast: $(VENV)/.installed-dev
	$(PYTEST) -m "not slow"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run_suite.py

clean:
	rm -rf $(VENV) .artesian .pytest_cache .mypy_cache .ruff_cache
