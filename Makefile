# jobyard: `make run` brings the whole stack up locally; `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install run test test-fast lint typecheck fmt clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv with jobyard and the test tools

run: $(STAMP)  ## the local stack: embedded Redis, API on :8000, a worker per queue, beat
	JOBYARD_CONFIG=$${JOBYARD_CONFIG:-jobyard.yaml} $(BIN)/jobyard dev

test: $(STAMP)  ## every test (unit, integration, chart, monitoring, e2e) against real services
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)  ## ruff and mypy --strict on services/
	$(BIN)/ruff check services tests
	$(BIN)/ruff format --check services tests
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format services tests
	$(BIN)/ruff check --fix services tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
