# Two entry points for a fresh machine: `make demo` and `make test` (see README).
VENV ?= .venv
export VENV

.PHONY: setup setup-test demo test test-all bench bench-gpu
setup:  # what the demo and the CLI need
	@bash scripts/setup.sh

setup-test:  # and what the tests need: pytest, gdal-bin, Chromium
	@bash scripts/setup.sh --test

demo: setup
	$(VENV)/bin/nationmap demo

test: setup-test
	$(VENV)/bin/python -m pytest -q

test-all: setup-test
	$(VENV)/bin/python -m pytest -q -m ''

bench: setup
	$(VENV)/bin/python -m benchmarks

bench-gpu: setup
	$(VENV)/bin/python -m benchmarks gpu
