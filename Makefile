# roadie: `make demo` runs the main job on the local fleet; `make test` runs every test.
# Both install what they need: Debian packages, the venv, the base image.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Hash-checked locks (pip-compile of pyproject.toml): what roadie needs to run, and the
# developers' complete set (tests, lint, bench, moto) pinned to the same versions.
RUNTIME_LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
ROADIE := $(BIN)/roadie
PYTEST := $(BIN)/pytest
DEBS := systemd-container debootstrap apt-cacher-ng openssh-client iproute2 postgresql

.PHONY: help deps venv image demo test test-unit test-fleet lint bench down clean

help:
	@echo "make demo       bring up the local fleet and run the main job on it"
	@echo "make test       lint + every test (unit, infra, services, fleet)"
	@echo "make test-unit  tests that need no fleet"
	@echo "make lint       ansible-lint (production profile)"
	@echo "make bench      benchmarks, written to docs/BENCHMARKS.md"
	@echo "make down       stop the local fleet"

deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.stamp: $(RUNTIME_LOCK) $(DEV_LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r $(RUNTIME_LOCK) -r $(DEV_LOCK)
	$(BIN)/pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.stamp

image: deps venv
	$(ROADIE) local image

demo: deps venv
	scripts/demo

lint: venv
	$(BIN)/ruff check cli bench tests infra services loadkit
	$(BIN)/ansible-lint --profile production --offline roles playbooks

test-unit: deps venv
	$(PYTEST) -m "not fleet" -n 2 tests

test-fleet: deps venv
	$(PYTEST) -m fleet tests

# The fleet part takes the local fleet down at the end (ROADIE_TEST_DOWN=1).
test: deps venv lint
	$(PYTEST) -m "not fleet" -n 2 tests
	ROADIE_TEST_DOWN=1 $(PYTEST) -m fleet tests

bench: deps venv
	$(BIN)/python -m bench

down: venv
	$(ROADIE) local down

clean: down
	rm -rf $(VENV) dist .roadie
