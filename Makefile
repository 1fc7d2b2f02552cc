# Moosic Gateway — two commands: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test venv services lint typecheck check clean loadtest infra-check

# Head-to-head benchmarks against python-socketio and Node socket.io: `make bench`, `make bench-quick`.
include loadtest/bench/bench.mk

# The virtual environment, rebuilt when pyproject.toml changes.
venv: $(STAMP)
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	@# Debian ships venv without ensurepip until python3-venv is installed.
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		echo "installing python3-venv (apt-get)"; rm -rf $(VENV); \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
		&& $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# System services the tests start themselves (installed here when absent).
services:
	@if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then \
		echo "installing redis-server (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	fi
	@# The browser tests (tests/web) drive Debian's chromium through Playwright's Python API.
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "installing chromium (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@bash tests/support/install-dynamodb-local.sh

# A development run on the embedded defaults: SQLite file, in-process broker, no external service.
run: venv
	MOOSIC_DEV=1 $(PY) -m gateway

test: venv services
	$(PY) -m pytest -q --durations=15

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: venv
	$(PY) -m mypy

check: lint typecheck test

# The CloudFormation stacks (infra/): cfn-lint on each, then their checks against the code and
# the deploy to a moto server (also part of `make test`, which runs everything under tests/).
infra-check: venv
	$(VENV)/bin/cfn-lint --regions ap-southeast-1 us-east-1 -- infra/stacks/*.yaml
	$(PY) -m pytest -q tests/infra

# Load test: Redis + two gateway nodes on loopback, locust through a baseline, a 6x surge and a
# reconnect storm, bounded in time. make loadtest LOADTEST_ARGS="--duration 90 --baseline 20"
LOADTEST_ARGS ?=
loadtest: venv services
	bash loadtest/run.sh $(LOADTEST_ARGS)

clean:
	rm -rf $(VENV) loadtest/.venv .mypy_cache .ruff_cache .pytest_cache data
