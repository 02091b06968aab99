# Event Manager. `make run` and `make test` are all a new user needs; both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The web console's browser tests drive Debian's chromium with Playwright (its own browser download
# needs a host this machine may not reach). Installed once; apt's lock is waited for, then retried.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)
APT := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=120 -q

.PHONY: run test lint bench chaos install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## embedded PostgreSQL + broker, migrations, all five services on :8000-8004
	$(BIN)/eventmgr dev

test: $(STAMP) $(CHROMIUM)  ## the whole suite against real PostgreSQL, broker and HTTP servers
	$(BIN)/ruff check .
	$(BIN)/pytest

$(CHROMIUM):
	@echo "installing Debian's chromium for the web console's browser tests"
	@for attempt in 1 2 3 4 5; do \
	  $(APT) install -y chromium || { $(APT) update && $(APT) install -y chromium; } && exit 0; \
	  echo "apt-get failed (attempt $$attempt of 5; another apt holding its lock?), retrying in 15 s"; sleep 15; \
	done; exit 1

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)  ## throughput and latency figures (minutes); prints a report
	$(BIN)/python -m tests.bench.run

chaos: $(STAMP)  ## long fault runs: killed services with work in flight
	$(BIN)/pytest -m chaos -o addopts="" -s

clean:
	rm -rf .data
