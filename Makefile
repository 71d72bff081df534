# Filas developer commands. `make help` lists them; CI runs `make test` through .ci/run.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help docs k8s-topics install system-deps up down demo topics test test-unit test-integration lint \
        typecheck format bench $(BENCH_TARGETS) clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

system-deps: ## Install the Debian packages (Java, Maven, ClickHouse, kcat, radclient, fping)
	bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: system-deps $(STAMP) ## Create .venv and install Filas with its dev tools

up: install ## Start Kafka (KRaft), the schema registry and ClickHouse locally
	$(BIN)/filas up $(UP_ARGS)

down: ## Stop every local service
	$(BIN)/filas down

topics: install ## Create or update the catalog's topics and register their schemas
	$(BIN)/filas topics apply
	$(BIN)/filas schemas register

demo: install ## The main job: the homologation run (an ISP's day through every processor, summary, status page)
	bash scripts/demo.sh $(DEMO_ARGS)

lint: install ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install ## mypy --strict
	$(BIN)/mypy filas schemas producers consumers streams bench

format: install ## Apply ruff's formatting and fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test-unit: install ## Unit tests only (no network)
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

test: install lint typecheck ## Everything CI runs: lint, types, unit, integration, e2e (starts services)
	$(BIN)/pytest -q --junitxml=.filas/test-results.xml $(PYTEST_ARGS)

# Every module bench/<name>.py except the shared helpers is a benchmark, run alone by
# `make bench-<name>` (underscores become dashes), so adding a benchmark never edits this file.
BENCH_MODULES := $(sort $(filter-out __init__ common,$(basename $(notdir $(wildcard bench/*.py)))))
BENCH_TARGETS := $(addprefix bench-,$(subst _,-,$(BENCH_MODULES)))

bench: $(BENCH_TARGETS) ## Every benchmark; each ends with 'name: value unit (ratio R vs PEER)'

bench-list: ## List the benchmarks (make bench-NAME runs one)
	@for t in $(BENCH_TARGETS); do echo "  $$t"; done

bench-%: install ## One benchmark: bench/<name>.py (e.g. make bench-producer, bench-sink-throughput)
	$(BIN)/python -m bench.$(subst -,_,$*)

k8s-topics: install ## Regenerate deploy/base's KafkaTopics, KafkaUsers (ACLs) and workloads from the catalog
	$(BIN)/filas topics render --k8s --write deploy/base

docs: install k8s-topics ## Regenerate everything generated from the code: README tables, deploy/base
	$(BIN)/python scripts/update_readme_tables.py

clean: down ## Stop services and delete local data, caches and the venv
	rm -rf .filas $(VENV)
