# Everyday verbs. Each target installs what it needs (virtualenv, pip packages, Debian packages).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-unit test-functional test-e2e bench lint deps clean

run: deps                     ## the main job: local stage + 20,000 events + conservation report
	$(PY) -m letgo demo

test: deps                    ## all test tiers (unit, functional, e2e)
	$(PY) -m pytest -q

test-unit: $(STAMP)
	$(PY) -m pytest -q -m unit

test-functional: deps
	$(PY) -m pytest -q -m functional

test-e2e: deps
	$(PY) -m pytest -q -m e2e

bench: deps                   ## performance ratios against baselines measured in the same run
	$(PY) -m bench

lint: $(STAMP)
	$(PY) -m letgo types check

deps: $(STAMP)
	@scripts/ensure-system-deps

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

clean:
	rm -rf $(VENV) .local reports
