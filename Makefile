# cbmflow: two commands on a fresh machine -> `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help setup demo ui test test-fast lint typecheck lock bench clean cluster cluster-down images deploy-test

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

setup:  ## venv, PostGIS, databases, schema, Airflow metadata (idempotent)
	@bash scripts/setup.sh

demo: setup  ## run the demo pipeline on the simulated Austrian season
	@source scripts/airflow-env.sh && $(VENV)/bin/cbmflow demo

ui: setup  ## the Airflow UI with the flag list and parcel view (port: CBMFLOW_API_PORT, default 8080)
	@bash scripts/ui.sh

test: setup  ## the whole suite: DAG integrity, unit, integration (PostGIS, S3), system (dag.test)
	@$(PY) -m pytest tests

test-fast: setup  ## unit tests only
	@$(PY) -m pytest tests/unit tests/dags -q

lint:  ## ruff (with the AIR rules) and mypy
	@$(VENV)/bin/ruff check src dags plugins tests benchmarks
	@$(VENV)/bin/mypy

lock:  ## re-resolve requirements.in (runtime) and requirements-dev.in (tests, linters) into pinned files (needs PyPI)
	uv pip compile requirements.in --python-version 3.11 -o requirements.txt
	uv pip compile requirements-dev.in --python-version 3.11 -c requirements.txt -o requirements-dev.txt

bench: setup  ## benchmarks (not tests): extraction, Denmark scale, classification
	@$(PY) benchmarks/extract.py
	@$(PY) benchmarks/denmark.py

clean:  ## remove the venv and local Airflow home (databases stay)
	rm -rf $(VENV) .airflow

cluster: setup  ## local Celery cluster (WORKERS=2): api-server on CBMFLOW_API_PORT (8080), Redis broker, PostgreSQL
	@bash scripts/cluster.sh up

cluster-down:  ## stop the local cluster (every component's process group)
	@bash scripts/cluster.sh down

images:  ## the Docker images from Debian and Python packages (no registry needed; layer-cached)
	@bash scripts/images.sh

deploy-test: setup  ## images, compose stack and one-node swarm running the demo's DAGs, compared with make demo
	@bash scripts/deploy-test.sh
