# certmint developer commands. `make help` lists them.
#   make test   - set up everything on a fresh machine and run every test tier (what CI runs)
#   make run    - run the operator against a local control plane it starts (or CLUSTER=current)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLUSTER ?= local
CLUSTER_DIR ?= .local/cluster

.PHONY: help setup binaries lint test test-unit test-integration run cluster-up cluster-down clean

help:
	@grep -E '^#   make' Makefile | sed 's/^#   //'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed ## virtualenv with the operator and test dependencies

binaries: ## build (or reuse cached) kube-apiserver, kube-controller-manager, kubectl and etcd
	@command -v go >/dev/null || { echo "Go is required to build the control plane (see README)"; exit 1; }
	bash tests/controlplane/build.sh >/dev/null

lint: setup
	$(BIN)/ruff check operator tests
	$(BIN)/mypy
	$(BIN)/lint-imports

test-unit: setup
	$(BIN)/pytest tests/unit

test-integration: setup binaries
	$(BIN)/pytest tests/integration

test: setup binaries lint ## every tier: lint, unit, integration
	$(BIN)/pytest tests

run: setup ## operator against the embedded local control plane (CLUSTER=current: your kubeconfig's cluster)
	$(BIN)/python -m tests.controlplane.devrun --cluster $(CLUSTER) --dir $(CLUSTER_DIR)

cluster-up: setup binaries
	$(BIN)/python -m tests.controlplane.cluster up --dir $(CLUSTER_DIR)

cluster-down:
	$(BIN)/python -m tests.controlplane.cluster down --dir $(CLUSTER_DIR)

clean:
	rm -rf $(VENV) .local .pytest_cache .mypy_cache .ruff_cache
