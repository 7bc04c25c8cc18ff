# Exchange Bus: the commands a developer and CI use. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install kafka up down status check test test-unit test-integration soak bench clean

help:
	@echo "make up     install everything, then start the local federation (one Kafka per agency)"
	@echo "make test   install everything, lint, type-check, and run all tests against real Kafka"
	@echo "make down   stop the local federation"
	@echo "make bench  run the benchmarks in bench/ and write the report (BENCH=--quick: minutes)"
	@echo "make soak   the fault tests SOAK=10 times, each with new random moments"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is needed, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The Apache Kafka jars, fetched once by Maven from deploy/kafka/pom.xml into a cache.
kafka: install
	$(BIN)/bus local install

up: kafka
	$(BIN)/bus local up

down: install
	$(BIN)/bus local down

status: install
	$(BIN)/bus local status

check: install
	$(BIN)/ruff check bus tests bench
	$(BIN)/ruff format --check bus tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

# Under coverage, with the child processes the tests start (bridges, subscribers); the branch
# coverage report comes last and fails below the floor in pyproject.toml.
test: check kafka
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

test-unit: install
	$(BIN)/pytest tests/unit

# Fault tests again and again with new random moments (BUS_TEST_SEED), outside `make test`.
SOAK ?= 10
soak: kafka
	for i in $$(seq 1 $(SOAK)); do \
		seed=$$RANDOM$$RANDOM; echo "soak $$i/$(SOAK): BUS_TEST_SEED=$$seed"; \
		BUS_TEST_SEED=$$seed $(BIN)/pytest -q tests/integration/test_bridge.py \
			tests/integration/test_subscriber.py -k "killed or dying or restarting" || exit 1; \
	done

# Writes bench/results/<time>/ (JSON, PNG) and docs/performance.md; BENCH=--quick for a short run.
BENCH ?=
bench: kafka
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .hypothesis .coverage .coverage.*
