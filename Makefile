# The two commands a newcomer needs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/errord.dev.toml

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	mkdir -p var/log var/lib
	$(BIN)/errord run -c $(CONFIG)

# The gates first (seconds), then the suite: lint, format and types are part of the test.
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The suite on three workers (pytest-xdist): most of an end-to-end test's time is a daemon
# subprocess working or waiting (with two workers the two cores were ~55% busy: 367 s),
# so three run side by side on two cores (279 s on 3 Dec). PYTEST_WORKERS=0 runs it in one
# process; `pytest tests/test_x.py` alone stays serial.
PYTEST_WORKERS ?= 3
test: lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

$(VENV)/.installed-bench: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $@ $(VENV)/.installed

# errord vs SEC vs a naive loop: bench/results.md and bench/results.png (a few minutes;
# BENCH_ARGS=--quick for 200k lines). SEC: `apt-get install -y sec`, else its column is empty.
bench: $(VENV)/.installed-bench
	@command -v sec >/dev/null || echo "note: sec is not installed (apt-get install -y sec); SEC is skipped"
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
