# Two entry points for a fresh machine: `make demo` and `make test` (see README).
VENV ?= .venv
export VENV

.PHONY: setup demo test test-all
setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/nationmap demo

test: setup
	$(VENV)/bin/python -m pytest -q

test-all: setup
	$(VENV)/bin/python -m pytest -q -m ''
