# mhsm-portal: two commands. `make run` sets up and starts the portal on its embedded
# defaults; `make test` sets up and passes the tests (PostgreSQL and Redis on 127.0.0.1).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test lint deps node-deps browser services bench clean lock azcli

# requirements-dev.txt = the production set (requirements.txt) + test tools, every
# package pinned with its hashes: pip refuses anything else.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.txt
	touch $@

# Regenerate both lock files from requirements*.in (pip-tools in a throwaway venv, never in
# the portal's); existing pins are kept unless an edit to the .in files needs a change.
PIP_TOOLS := pip-tools==7.6.2
lock:
	$(PYTHON) -m venv var/pip-tools
	var/pip-tools/bin/pip install --quiet --disable-pip-version-check $(PIP_TOOLS)
	var/pip-tools/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file=requirements.txt requirements.in
	var/pip-tools/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file=requirements-dev.txt requirements-dev.in
	var/pip-tools/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file=tests/support/azcli-requirements.txt \
		tests/support/azcli-requirements.in

# The Azure CLI the emulator's CLI test drives, in its own venv (its azure-* pins conflict with ours).
.venv-azcli/.installed: tests/support/azcli-requirements.txt
	$(PYTHON) -m venv .venv-azcli
	.venv-azcli/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r tests/support/azcli-requirements.txt
	touch $@

azcli: .venv-azcli/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(VENV)/.installed node-deps

node-deps: node_modules/.installed

# Debian's chromium for the browser tests (Playwright drives it; it downloads no browser),
# poppler-utils' pdftotext, which reads the evidence pack's PDF in its tests, and the openssl
# command a security-domain custodian runs to prove custody (its test runs it as the page says).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	@test -x /usr/bin/pdftotext || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null)
	@command -v openssl >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null)

# PostgreSQL and Redis for the tests: start them if they are down.
services:
	@deploy/ensure_services.sh

run: deps
	$(PY) deploy/run_local.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check --select F,E9,B --ignore B008,B904 portal keys_app access_app dr_app cmk_app compliance_app hsm_emulator bench tests deploy

test: deps azcli browser services lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: deps
	@for script in bench/*_bench.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf var .pytest_cache
