# Exchange Bus: the commands a developer and CI use. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install kafka prometheus chromium up down status demo docs check test test-unit test-integration soak chaos bench clean

help:
	@echo "make up     install everything, then start the local federation: clusters, bridges,"
	@echo "           Prometheus and Alertmanager; prints where to look"
	@echo "make test   install everything, lint, type-check, and run all tests against real Kafka"
	@echo "make demo   realistic traffic across the running federation, with a live view (Ctrl-C stops)"
	@echo "make down   stop the local federation (bridges, then clusters)"
	@echo "make bench  run the benchmarks in bench/ and write the report (BENCH=--quick: minutes)"
	@echo "make soak   the fault tests SOAK=10 times, each with new random moments"
	@echo "make chaos  RUNS=3 seeded runs of faults while events flow (SEED=S replays a run)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is needed, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Prometheus, promtool, Alertmanager and amtool from Debian (the alert and dashboard tests use
# them; `bus local up` runs them). Only when missing. CI runs as root on Debian; elsewhere this
# needs sudo.
prometheus:
	@command -v promtool >/dev/null && command -v amtool >/dev/null || { \
		apt-get update -qq >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			prometheus prometheus-alertmanager >/dev/null; }

# Debian's Chromium, only when missing: the console test renders the page headless. A target of
# its own so that `make up` does not pull a browser.
chromium:
	@command -v chromium >/dev/null || { \
		apt-get update -qq >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium >/dev/null; }

# The Apache Kafka jars, fetched once by Maven from deploy/kafka/pom.xml into a cache.
kafka: install
	$(BIN)/bus local install

# Prints where to look at the end: Prometheus, its console page, Alertmanager.
up: kafka prometheus
	$(BIN)/bus local up

down: install
	$(BIN)/bus local down

status: install
	$(BIN)/bus local status

# On top of `make up`: every agency publishes; a live view of what crosses, is denied, quarantined.
demo: install
	$(BIN)/bus demo $(DEMO_ARGS)

# docs/cli.md from the commands' own help (a unit test fails when it is stale).
docs: install
	$(BIN)/python -m bus.cli._reference > docs/cli.md

check: install
	$(BIN)/ruff check bus tests bench examples
	$(BIN)/ruff format --check bus tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

# Under coverage, with the child processes the tests start (bridges, subscribers); the branch
# coverage report comes last and fails below the floor in pyproject.toml.
test: check kafka prometheus chromium
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

test-unit: install prometheus
	$(BIN)/pytest tests/unit

# Fault tests again and again with new random moments (BUS_TEST_SEED), outside `make test`.
SOAK ?= 10
soak: kafka
	for i in $$(seq 1 $(SOAK)); do \
		seed=$$RANDOM$$RANDOM; echo "soak $$i/$(SOAK): BUS_TEST_SEED=$$seed"; \
		BUS_TEST_SEED=$$seed $(BIN)/pytest -q tests/integration/test_bridge.py \
			tests/integration/test_subscriber.py tests/integration/test_replicated.py \
			-k "killed or dying or restarting" || exit 1; \
	done

# A seeded chaos soak (tests/chaos.py), outside `make test`: RUNS runs, each with the faults its
# seed picks while events flow, then exact counts on every mirror and audit trail. SEED=S makes
# the first run's seed S (then S+1, ...); a failing run prints its seed to replay it.
RUNS ?= 3
SEED ?=
chaos: kafka
	$(BIN)/python -m tests.chaos --runs $(RUNS) $(if $(SEED),--seed $(SEED),)

# Writes bench/results/<time>/ (JSON, PNG) and docs/performance.md; BENCH=--quick for a short run.
BENCH ?=
bench: kafka
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .hypothesis .coverage .coverage.*
