# jobyard: `make run` brings the whole stack up locally; `make test` runs every test.
# The system Python first: Debian's python3 carries the fix for CVE-2024-6923 (mail header
# injection) as a backport, which a self-built 3.11 before 3.11.10 does not (email.send and
# a test refuse such an interpreter). Override with `make ... PYTHON=/path/to/python3`.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# checkov pins packaging<24, which pytest 9 cannot share: it gets its own venv.
CHECKOV := $(VENV)/tools/checkov/bin/checkov

.PHONY: help install run test test-faults bench bench-quick lint fmt clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

$(CHECKOV):
	$(PYTHON) -m venv $(VENV)/tools/checkov
	$(VENV)/tools/checkov/bin/pip install --quiet 'checkov>=3.2,<4'

install: $(STAMP) $(CHECKOV)  ## create .venv with jobyard and the test tools

run: $(STAMP)  ## the local stack: embedded Redis, API on :8000, a worker per queue, beat
	JOBYARD_CONFIG=$${JOBYARD_CONFIG:-jobyard.yaml} $(BIN)/jobyard dev

test: $(STAMP) $(CHECKOV)  ## every test (unit, integration, chart, monitoring, e2e) against real services
	$(BIN)/pytest -q -p no:cacheprovider --durations=15

test-faults: $(STAMP)  ## only the fault-injection suite (tests/e2e)
	$(BIN)/pytest -q -p no:cacheprovider tests/e2e

bench: $(STAMP)  ## benchmarks against bare Celery, RQ, arq, dramatiq and Flower (< 20 min)
	$(BIN)/python -m bench

bench-quick: $(STAMP)  ## a short benchmark run
	$(BIN)/python -m bench --quick

lint: $(STAMP)  ## ruff and mypy --strict on services/
	$(BIN)/ruff check services tests deploy/monitoring bench
	$(BIN)/ruff format --check services tests deploy/monitoring bench
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format services tests deploy/monitoring
	$(BIN)/ruff check --fix services tests deploy/monitoring

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
