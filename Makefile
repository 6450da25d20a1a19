# kumoflow: `make demo` and `make test` set up everything they need (Debian
# packages, Open vSwitch, the Python venv) and then run. See README.md.

SHELL       := /bin/bash
PYTHON      ?= python3
VENV        := .venv
VPY         := $(VENV)/bin/python
# Written after a successful `pip install -e '.[test]'`; lives inside the
# venv so removing the venv also forgets the install.
VENV_STAMP  := $(VENV)/.kumoflow-installed
PYTEST_ARGS ?=
DEMO_ARGS   ?=

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PYTHON

.PHONY: all setup system venv demo test clean

all: test

## setup: system packages, services and the venv (idempotent, fast when done)
setup: system venv

## system: Debian packages (scripts/system-packages.txt) and Open vSwitch
system:
	@bash scripts/setup-system.sh

## venv: .venv with kumoflow installed editable plus the test extra;
## reinstalled only when pyproject.toml changes
venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml | system
	@if ! $(VPY) -m pip --version >/dev/null 2>&1; then \
	    echo "creating $(VENV)"; rm -rf $(VENV); $(PYTHON) -m venv $(VENV); \
	fi
	$(VPY) -m pip install -q -e '.[test]'
	@touch $@

## demo: the main job
demo: setup
	$(VENV)/bin/kumoflow demo $(DEMO_ARGS)

## test: the whole suite, including tests that need root, OVS and tshark
## (scripts/run-tests.sh: the unit tests beside the benchmarks' smoke runs,
## then the other integration tests alone; PYTEST_ARGS: one pytest instead)
test: setup
	VPY=$(VPY) PYTEST_ARGS="$(PYTEST_ARGS)" bash scripts/run-tests.sh

clean:
	rm -rf $(VENV) .stamp* build src/*.egg-info .pytest_cache .hypothesis
