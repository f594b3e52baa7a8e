# Everyday verbs. Each target installs what it needs (virtualenv, pip packages, Debian packages).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
HPY    := .venv-humilis/bin/python
HSTAMP := .venv-humilis/.installed
CSTAMP := .venv-checkov/.installed
STAGE  ?= DEV

.PHONY: run test test-unit test-functional test-e2e chaos bench lint deps browser tools package render preview deploy destroy clean

run: deps                     ## the main job: local stage + 20,000 events + conservation report
	$(PY) -m letgo demo

test: deps browser tools package lint  ## lint, then all test tiers (unit, functional, e2e, chaos) incl. the deployment checks
	LETGO_REQUIRE_BROWSER=1 $(PY) -m pytest -q

test-unit: $(STAMP)
	$(PY) -m pytest -q -m unit

test-functional: deps tools package
	$(PY) -m pytest -q -m functional

test-e2e: deps browser tools package
	LETGO_REQUIRE_BROWSER=1 $(PY) -m pytest -q -m e2e

chaos: deps                   ## the chaos suite alone: sink outages, poison records, a killed consumer
	$(PY) -m pytest -q -m chaos

bench: deps                   ## performance ratios against baselines measured in the same run
	$(PY) -m bench

lint: $(STAMP)                ## ruff (rules in pyproject.toml), then the event types' versions
	$(VENV)/bin/ruff check handlers letgo deploy bench tests
	$(PY) -m letgo types check

deps: $(STAMP)
	@scripts/ensure-system-deps

browser:                      ## Debian's chromium, for the search page's headless-browser test
	@scripts/ensure-system-deps browser

tools: $(HSTAMP) $(CSTAMP)       ## humilis and checkov, each in its own virtualenv (their pins clash with ours)

package: $(STAMP)             ## deterministic Lambda zips in dist/ (Lambda-platform wheels)
	$(PY) deploy/package.py

render: $(HSTAMP)             ## every layer rendered for STAGE, without AWS
	$(HPY) deploy/humilis_run.py render --stage $(STAGE) $(if $(PARAMETERS),--parameters $(PARAMETERS))

preview: package $(HSTAMP)    ## what `make deploy` would change in STAGE (change sets; applies nothing)
	$(HPY) deploy/humilis_run.py preview --stage $(STAGE) $(if $(PARAMETERS),--parameters $(PARAMETERS))

deploy: package $(HSTAMP)     ## create or update every layer of STAGE (humilis update)
	$(HPY) deploy/humilis_run.py update --stage $(STAGE) --output build/outputs-$(STAGE).yaml $(if $(PARAMETERS),--parameters $(PARAMETERS))

destroy: $(HSTAMP)            ## delete every layer of STAGE, in reverse order (a protected stage: CONFIRM=letgo-STAGE)
	$(HPY) deploy/humilis_run.py delete --stage $(STAGE) $(if $(CONFIRM),--confirm $(CONFIRM))

$(HSTAMP): requirements-humilis.txt pyproject.toml setup.py
	$(PYTHON) -m venv .venv-humilis
	$(HPY) -m pip install -q --upgrade pip
	$(HPY) -m pip install -q -r requirements-humilis.txt
	$(HPY) -m pip install -q --no-deps -e .
	@touch $(HSTAMP)

$(CSTAMP): requirements-checkov.txt
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install -q --upgrade pip
	.venv-checkov/bin/python -m pip install -q -r requirements-checkov.txt
	@touch $(CSTAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-search.txt handlers/ml/requirements-training.txt pyproject.toml setup.py
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

clean:
	rm -rf $(VENV) .venv-humilis .venv-checkov .local reports build dist
