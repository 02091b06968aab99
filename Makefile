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

# Every install (make run, make test, CI, the Dockerfile) installs exactly the versions in uv.lock,
# with their hashes. uv itself is bootstrapped with pip at the version uv.lock pins (a test checks).
UV_VERSION := 0.13.9
UV := $(BIN)/uv

.PHONY: run test lint audit bench chaos install lock tools clean

$(UV):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# --locked: refuse a uv.lock that no longer matches pyproject.toml (run `make lock`) rather than
# install something else. --inexact: an exact sync would uninstall whatever a developer installed
# into .venv by hand, such as a package tried before it is added to pyproject.toml. (Not pip, which
# bootstraps uv above: it is in the lock, through pip-audit's pip-api.) The cost: a package dropped
# from the lock stays in an existing .venv, where tests may still import it; CI, the image and a
# fresh clone never have it. `rm -rf .venv && make install` clears it.
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --inexact --extra dev
	touch $(STAMP)

install: $(STAMP)

# checkov, for tests/test_deploy.py, in a virtualenv of its own (it pins many packages the project
# uses too), installed from tools/checkov-requirements.txt: every package pinned, every hash
# checked. tests/test_deploy.py runs this target too when it is run alone.
TOOLS := .venv-tools
CHECKOV_REQUIREMENTS := tools/checkov-requirements.txt
CHECKOV_STAMP := $(TOOLS)/checkov/installed

$(CHECKOV_STAMP): $(CHECKOV_REQUIREMENTS) | $(UV)
	rm -rf $(TOOLS)/checkov
	$(BIN)/python -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install -q --disable-pip-version-check --require-hashes --no-deps \
	  --requirement $(CHECKOV_REQUIREMENTS)
	touch $@

tools: $(CHECKOV_STAMP)

# After changing dependencies in pyproject.toml: `make lock` re-resolves uv.lock, keeping every
# other pin; commit both files. `make lock ARGS=--upgrade` moves everything to the newest releases.
lock: | $(UV)
	$(UV) lock $(ARGS)

audit: $(STAMP)  ## pip-audit over uv.lock (skipped loudly, with the reasons, where no vulnerability service can be used)
	$(BIN)/python scripts/audit_lock.py

run: $(STAMP)  ## embedded PostgreSQL + broker (in memory: for trying and developing), all five services on :8000-8004 (a second dispatcher process on a free port)
	$(BIN)/eventmgr dev

# The audit runs after the tests: an advisory published upstream must not keep them from running.
test: $(STAMP) $(CHROMIUM) $(CHECKOV_STAMP)  ## the whole suite against real PostgreSQL, broker and HTTP servers
	$(BIN)/ruff check .
	$(BIN)/pytest
	$(BIN)/python scripts/audit_lock.py

$(CHROMIUM):
	@echo "installing Debian's chromium for the web console's browser tests"
	@for attempt in 1 2 3 4 5; do \
	  $(APT) install -y chromium || { $(APT) update && $(APT) install -y chromium; } && exit 0; \
	  echo "apt-get failed (attempt $$attempt of 5; another apt holding its lock?), retrying in 15 s"; sleep 15; \
	done; exit 1

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)  ## throughput, latency and CPU beside the bare pipeline (under 12 minutes): bench/results/, docs/bench/
	$(BIN)/python -m tests.bench.run

chaos: $(STAMP)  ## long fault runs: killed services with work in flight
	$(BIN)/pytest -m chaos -o addopts="" -s

clean:
	rm -rf .data
