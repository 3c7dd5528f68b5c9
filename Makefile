# The two commands a newcomer needs: `make demo` (runs the whole system, embedded) and
# `make test` (the suite; needs PostgreSQL and Redis on 127.0.0.1). Both install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lock demo test lint bench clean

# Every transitive dependency is pinned: requirements.lock (runtime: the Docker image) and
# requirements-dev.lock (runtime + the dev extra: this venv, CI). `make lock` regenerates
# both from pyproject.toml; commit them with the pyproject change.
LOCK_PYTHON := 3.11
COMPILE = $(BIN)/uv pip compile pyproject.toml --python-version $(LOCK_PYTHON) --quiet \
	--custom-compile-command "make lock"

$(STAMP): pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(COMPILE) -o requirements.lock
	$(COMPILE) --extra dev -o requirements-dev.lock

demo: $(STAMP)
	$(BIN)/crm-parity demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The hot paths of the real stack against bare baselines, in one run (bench/run.py):
# writes bench/results/latest.json and prints the table the README shows. Needs wrk.
# BENCH_ARGS=--scale-out runs 2 processes per API and 2 worker hosts.
bench: $(STAMP)
	command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf var .pytest_cache
