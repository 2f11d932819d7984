# Lakehouse platform. `make help` lists the targets; each calls the `lakehouse` CLI.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# uv 0.13.8: installs the locked environment (uv.lock) in seconds; pinned so the lock format matches.
UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv
LH := $(VENV)/bin/lakehouse
PYTEST := $(VENV)/bin/python -m pytest

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	python3 -m pip install --quiet --user "uv==$(UV_VERSION)"

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

.PHONY: install
install: system-deps $(VENV)/.synced ## Install system packages (as root) and the locked Python environment

.PHONY: system-deps
system-deps: ## Install OS packages the native stack needs (PostgreSQL server), as root via apt
	@bash scripts/system-deps.sh

.PHONY: test-deps
test-deps: ## Install OS packages the tests also need (Chromium for the dashboard tests), as root via apt
	@bash scripts/system-deps.sh test

.PHONY: env
env: $(VENV)/.synced ## Generate .env with fresh secrets if it does not exist
	@$(VENV)/bin/python -c "from lakehouse.settings import load_settings, env_file_path; load_settings(); print(env_file_path())"

.PHONY: doctor
doctor: $(VENV)/.synced ## Preflight: Java versions, Go, PostgreSQL, disk, memory, free ports
	@$(LH) doctor

.PHONY: up
up: install ## Start the native stack, or one profile of it (PROFILE=core|bi|orchestration|all; `lakehouse services` lists them)
	@$(LH) up $(if $(PROFILE),--profile $(PROFILE),)

.PHONY: down
down: $(VENV)/.synced ## Stop the native stack (state is kept)
	@$(LH) down

.PHONY: status
status: $(VENV)/.synced ## Show each program's state, health and address (exit 3 if one that up started is not healthy)
	@$(LH) status

.PHONY: logs
logs: $(VENV)/.synced ## Print program logs (S=trino to pick one, F=1 to follow)
	@$(LH) logs $(S) $(if $(F),--follow,)

.PHONY: clean
clean: $(VENV)/.synced ## Stop the stack and DELETE its data folder (asks first; YES=1 skips)
	@$(LH) clean $(if $(YES),--yes,)

.PHONY: sql
sql: $(VENV)/.synced ## Trino CLI on the lakehouse catalog; Q="SELECT ..." runs one statement
	@$(LH) sql $(if $(Q),--query "$$Q",) $(if $(FORMAT),--format $(FORMAT),)

.PHONY: demo
demo: install ## Start the platform, create the namespaces, smoke-load through Spark, print where to look
	@$(LH) demo

.PHONY: dbt-build
dbt-build: $(VENV)/.synced ## dbt build (seeds, models, tests) against the stack's Trino
	@$(LH) dbt build

.PHONY: dbt
dbt: $(VENV)/.synced ## Any dbt command: make dbt ARGS="test -s fct_observations"
	@$(LH) dbt $(ARGS)

.PHONY: superset-import
superset-import: $(VENV)/.synced ## Check superset_assets/ against the marts and import it into Superset
	@$(LH) superset import

.PHONY: superset-export
superset-export: $(VENV)/.synced ## Export Superset's dashboards into superset_assets/ (review with git diff)
	@$(LH) superset export --to superset_assets

.PHONY: lint-sql
lint-sql: $(VENV)/.synced ## sqlfluff on the dbt models (Trino dialect, dbt templater; needs the stack up)
	@$(LH) lint-sql

# Each tier prints its 25 slowest tests and its wall time; a test that hangs fails alone.
UNIT_ARGS := tests/unit -q --durations=25 --timeout=300
INTEGRATION_ARGS := tests/integration -q -m integration --durations=25 --timeout=1500

.PHONY: test
test: install test-deps ## Run every test: unit tier, then the integration tier against the native stack
	@t0=$$(date +%s); $(PYTEST) $(UNIT_ARGS); rc=$$?; echo "unit tier: $$(( $$(date +%s) - t0 )) s"; exit $$rc
	@t0=$$(date +%s); $(PYTEST) $(INTEGRATION_ARGS); rc=$$?; echo "integration tier: $$(( $$(date +%s) - t0 )) s"; exit $$rc

.PHONY: test-unit
test-unit: $(VENV)/.synced ## Unit tier only (no services)
	$(PYTEST) $(UNIT_ARGS)

.PHONY: test-integration
test-integration: install test-deps ## Integration tier (starts and stops its own stack; KEEP=1 leaves it up)
	$(PYTEST) $(INTEGRATION_ARGS)

.PHONY: bench-stack
bench-stack: install ## Benchmark: warm start and peak RSS per service, against bare starts
	@$(LH) bench stack

.PHONY: bench-dbt
bench-dbt: install ## Benchmark: dbt build times and dashboard query latency, against DuckDB over the same Iceberg data
	@$(LH) bench dbt

.PHONY: bench-superset
bench-superset: install ## Benchmark: dashboard chart-data time through Superset vs the same SQL sent directly to Trino
	@$(LH) bench superset

.PHONY: bench-airflow
bench-airflow: install ## Benchmark: Airflow's queued->running overhead and batch->marts freshness (30 s batches), vs no scheduler
	@$(LH) bench airflow

.PHONY: bench-follow
bench-follow: install ## Benchmark: missed batches and publication->commit lag, 2 sources every 10 s while dbt builds run
	@$(LH) bench follow

.PHONY: bench-cpu
bench-cpu: install ## Benchmark: CPU of the whole platform per 5-minute period (2 sources), vs the scheduler stopped (~35 min)
	@$(LH) bench cpu

.PHONY: bench-ingest
bench-ingest: install ## Benchmark: ingest 10k/100k/1M rows end to end, against pyarrow JSON -> Parquet
	@$(LH) bench ingest
