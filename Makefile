# mhsm-portal: two commands. `make run` sets up and starts the portal on its embedded
# defaults; `make test` sets up and passes the tests (PostgreSQL and Redis on 127.0.0.1).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test lint deps node-deps browser services bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(VENV)/.installed node-deps

node-deps: node_modules/.installed

# Debian's chromium for the browser tests (Playwright drives it; it downloads no browser).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# PostgreSQL and Redis for the tests: start them if they are down.
services:
	@deploy/ensure_services.sh

run: deps
	$(PY) deploy/run_local.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check --select F,E9,B --ignore B008,B904 portal keys_app dr_app hsm_emulator bench tests deploy

test: deps browser services lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: deps
	@for script in bench/*_bench.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf var .pytest_cache
