# sbx developer entry points. CI runs `make test` (see .ci/run).
#
#   make setup             machine packages, test user, .venv (as root); checks and .venv otherwise
#   make test              setup, unit tests, integration tests (as the unprivileged user sbxtest when root)
#   make test-unit         unit tests only (needs only .venv)
#   make test-integration  integration tests only; PYTEST_ARGS='-k token -x' narrows them
#   make lint              ruff
#   make mutation          mutmut over the security-critical modules (slow; MUTANTS='sandbox.oci.*' narrows)
#   make bench / demo      benchmarks / offline demo
#   make clean             remove .venv, caches and (as root) the integration copy

SHELL := /bin/bash
.DEFAULT_GOAL := help
.NOTPARALLEL:

VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
TEST_USER ?= sbxtest
TEST_ROOT ?= /var/tmp/sbx-test
export SBX_TEST_USER := $(TEST_USER)
export SBX_TEST_ROOT := $(TEST_ROOT)

# pytest exits 5 when it collects nothing: fine only while tests/unit holds no test files
define run_unit_tests
	@echo "== unit tests"
	@status=0; $(PY) -m pytest tests/unit $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ] && [ -z "$$(find tests/unit -name 'test_*.py' -o -name '*_test.py' 2>/dev/null)" ]; then \
	  echo "no unit tests yet"; status=0; \
	fi; exit $$status
endef

define run_integration_tests
	@echo "== integration tests"
	@bash scripts/test-integration.sh $(PYTEST_ARGS)
endef

.PHONY: help setup venv test test-unit test-integration lint bench demo clean mutation

help:
	@sed -n '1,11s/^# \{0,1\}//p' Makefile

setup:
	@bash scripts/setup.sh

venv:
	@bash scripts/setup.sh --venv-only

test: setup
	$(run_unit_tests)
	$(run_integration_tests)

test-unit: venv
	$(run_unit_tests)

test-integration: setup
	$(run_integration_tests)

lint: venv
	$(PY) -m ruff check .

# not part of `make test`: a measurement of the unit tests (which mutants of security code they fail to notice)
MUTANTS ?=
mutation: venv
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[mutation]'
	$(PY) -m mutmut run --max-children 2 $(MUTANTS)
	$(PY) -m mutmut export-cicd-stats
	@cat mutants/mutmut-cicd-stats.json; echo

# bench: the baselines (podman, bwrap, matplotlib), sbx installed world-readable in $(TEST_ROOT) as users install it
# (pip install ., not editable: scripts/bench-install.sh), every benchmark
bench: setup
	@bash scripts/bench-setup.sh
	@SBX_INSTALL_ONLY=1 bash scripts/test-integration.sh
	@bash scripts/bench-install.sh
	@$(PY) -m bench

# demo: nginx from Debian packages, served by a local registry, run rootless as $(TEST_USER) on port 8080
demo: setup
	@bash scripts/demo.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis mutants
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	@if [ "$$(id -u)" -eq 0 ] && [ -d "$(TEST_ROOT)" ]; then echo "rm -rf $(TEST_ROOT)"; rm -rf "$(TEST_ROOT)"; fi
