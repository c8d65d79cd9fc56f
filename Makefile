# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP_LOCAL := $(VENV)/.installed-local
STAMP_DEV   := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck unit integration clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_LOCAL): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[local]'
	touch $@

$(STAMP_DEV): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	touch $@ $(STAMP_LOCAL)

demo: $(STAMP_LOCAL)
	$(BIN)/outroute demo

test: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP_DEV)
	$(BIN)/mypy

unit: $(STAMP_DEV)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP_DEV)
	$(BIN)/python -m pytest tests/integration

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
