#!/usr/bin/env bash
# The e2e suite on kind, in one command, for a user with Docker and kind:
#
#   bash e2e/kind/run.sh
#
# 1. creates a kind cluster (e2e/kind/kind-config.yaml);
# 2. builds the operator image from the repository's Dockerfile with Docker (base python:3.11-slim,
#    dependencies from PyPI) and pulls the workload image (python:3.11-slim-bookworm: python3 + OpenSSL);
# 3. `kind load docker-image` puts both on the node (the pods use imagePullPolicy: Never);
# 4. runs `pytest e2e/test_mtls.py` with the kind provider; the suite's first scenario installs the
#    operator with `helm upgrade --install` of charts/certmint and the loaded image, as on the local node;
# 5. deletes the cluster (KEEP_CLUSTER=1 keeps it; on failure, CERTMINT_E2E_KIND_LOGS=DIR exports the
#    node logs there first).
#
# Needs: docker, kind, python3 (3.11+) with `make setup` done or doable; helm on PATH or fetched by
# tests/chart/get_helm.sh. Environment: KIND_NODE_IMAGE (default: the kind v0.33.0 image of Kubernetes
# 1.36.4, by digest), CERTMINT_E2E_KIND_CLUSTER (certmint-e2e), CERTMINT_E2E_WORKLOAD_IMAGE.
#
# Not run on this project's own machines: there is no kind binary, no kind node image can be pulled,
# and their cgroup v1 is refused by kind's node images from Kubernetes 1.35 on. CI there runs the
# local provider (`pytest e2e -m e2e`); this script is what the copyable workflow
# (e2e/kind/github-workflow.yml) runs.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cluster=${CERTMINT_E2E_KIND_CLUSTER:-certmint-e2e}
# kind v0.33.0's release notes list this image for Kubernetes 1.36.4 (pin by digest, as kind advises).
node_image=${KIND_NODE_IMAGE:-kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed}
image=certmint.local/certmint-operator:e2e
workload=${CERTMINT_E2E_WORKLOAD_IMAGE:-python:3.11-slim-bookworm}

for tool in docker kind; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 1; }
done
cd "$repo"
[ -x .venv/bin/pytest ] || make setup
helm_bin=$(command -v helm || bash tests/chart/get_helm.sh | tail -1)
work=$(mktemp -d)

teardown() {
  rc=$?
  if [ "$rc" != 0 ] && [ -n "${CERTMINT_E2E_KIND_LOGS:-}" ]; then
    kind export logs --name "$cluster" "$CERTMINT_E2E_KIND_LOGS" >/dev/null 2>&1 || true
  fi
  if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
    echo "run.sh: kept kind cluster $cluster (kind delete cluster --name $cluster)" >&2
  else
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap teardown EXIT

start=$(date +%s)
kind create cluster --name "$cluster" --image "$node_image" --config e2e/kind/kind-config.yaml --wait 180s
docker build --tag "$image" .
docker pull "$workload"
kind load docker-image --name "$cluster" "$image" "$workload"
kind get kubeconfig --name "$cluster" >"$work/kubeconfig"
echo "run.sh: cluster ready and images loaded in $(( $(date +%s) - start ))s" >&2

CERTMINT_E2E_PROVIDER=kind \
CERTMINT_E2E_KIND_CLUSTER="$cluster" \
CERTMINT_E2E_KUBECONFIG="$work/kubeconfig" \
CERTMINT_E2E_IMAGE="$image" \
CERTMINT_E2E_WORKLOAD_IMAGE="$workload" \
HELM="$helm_bin" \
  .venv/bin/pytest e2e/test_mtls.py -m e2e -s -q -p no:cacheprovider
