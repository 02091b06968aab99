# Event Manager. `make run` and `make test` are all a new user needs; both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench chaos install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## embedded PostgreSQL + broker, migrations, all five services on :8000-8004
	$(BIN)/eventmgr dev

test: $(STAMP)  ## the whole suite against real PostgreSQL, broker and HTTP servers
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)  ## throughput and latency figures (minutes); prints a report
	$(BIN)/python -m tests.bench.run

chaos: $(STAMP)  ## long fault runs: killed services with work in flight
	$(BIN)/pytest -m chaos -o addopts="" -s

clean:
	rm -rf .data
