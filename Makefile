# Filas developer commands. `make help` lists them; CI runs `make test` through .ci/run.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install system-deps up down demo topics test test-unit test-integration lint \
        typecheck format bench bench-producer bench-sink bench-radius bench-radius-coa bench-radius-storm \
        clean

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

demo: install ## The main job: platform up, topics, IXC homologation poll, emit and read back
	bash scripts/demo.sh

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

bench: bench-producer bench-sink bench-radius bench-radius-coa bench-radius-storm ## Every benchmark; each ends with 'name: value unit (ratio R vs PEER)'

bench-producer: install ## SDK Avro events/s vs Kafka's ProducerPerformance on the same broker
	$(BIN)/python -m bench.producer

bench-sink: install ## ClickHouse sink rows/s (Kafka -> ClickHouse) vs clickhouse-client TSV insert
	$(BIN)/python -m bench.sink_throughput

bench-radius: install ## RADIUS gateway Access-Request req/s and p50/p99 vs FreeRADIUS 3.2 (radclient load)
	$(BIN)/python -m bench.radius_auth

bench-radius-coa: install ## Contract block event -> NAS ACK latency p50/p99 (CoA/Disconnect)
	$(BIN)/python -m bench.radius_coa

bench-radius-storm: install ## Reconnect storm: 20,000 logins from 20 NAS in 10 s, unanswered past 3 s, drain time
	$(BIN)/python -m bench.radius_storm

clean: down ## Stop services and delete local data, caches and the venv
	rm -rf .filas $(VENV)
