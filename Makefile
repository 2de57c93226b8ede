# The two commands of the README: `make demo` and `make test`. Both build the
# virtual environment in .venv from pyproject.toml when it is missing or stale.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

VIEWERS ?= 10
DURATION ?= 30

.PHONY: demo test lint bench setup

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/oasis demo --viewers $(VIEWERS) --duration $(DURATION)

test: $(STAMP)
	$(BIN)/ruff check oasis tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/live_swarm.py --viewers 20 --duration 60
