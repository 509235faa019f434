# Two entry points for a fresh machine: `make demo` and `make test` (see README).
VENV ?= .venv
export VENV

.PHONY: setup demo test test-all bench bench-gpu
setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/nationmap demo

test: setup
	$(VENV)/bin/python -m pytest -q

test-all: setup
	$(VENV)/bin/python -m pytest -q -m ''

bench: setup
	$(VENV)/bin/python -m benchmarks

bench-gpu: setup
	$(VENV)/bin/python -m benchmarks gpu
