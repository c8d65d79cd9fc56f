# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP_LOCAL := $(VENV)/.installed-local
STAMP_DEV   := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck unit integration sdk-typescript clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_LOCAL): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[local]'
	touch $@

$(STAMP_DEV): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	touch $@ $(STAMP_LOCAL)

# The TypeScript SDK: npm packages from its lock file, then tsc (strict; the build checks the
# types of the sources, tests and benchmark) and its unit tests. Its integration tests run
# from pytest (tests/integration/test_typescript_sdk.py) against the servers pytest starts.
NPM      ?= npm
TS       := sdk-typescript
STAMP_TS := $(TS)/node_modules/.installed

$(STAMP_TS): $(TS)/package.json $(TS)/package-lock.json
	cd $(TS) && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

sdk-typescript: $(STAMP_TS) $(STAMP_DEV)
	cd $(TS) && $(NPM) run --silent build
	cd $(TS) && OUTROUTE_CLI=$(CURDIR)/$(BIN)/outroute $(NPM) test --silent

# The dashboard's browser test drives Debian's Chromium through Playwright (a browser
# download of Playwright's own never happens): installed when it is missing.
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

demo: $(STAMP_LOCAL)
	$(BIN)/outroute demo

test: $(STAMP_DEV) $(STAMP_TS) $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(MAKE) sdk-typescript
	# Two pytest processes, a test module each at a time: the integration tests mostly wait
	# on brokers, workers and browsers, so two halve the wall time on two cores.
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP_DEV)
	$(BIN)/mypy

unit: $(STAMP_DEV)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP_DEV)
	$(BIN)/python -m pytest -n 2 --dist loadfile tests/integration

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
	rm -rf $(TS)/node_modules $(TS)/build $(TS)/dist
