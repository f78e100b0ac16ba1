#!/usr/bin/env bash
# The e2e suite on kind, in one command, for a user with Docker and kind:
#
#   bash e2e/kind/run.sh          # create, load, run the suite, delete
#   bash e2e/kind/run.sh up       # create and load only; the cluster is kept
#   bash e2e/kind/run.sh down     # delete it (and, in local mode, stop the dockerd that `up` started)
#   bash e2e/kind/run.sh logs     # `kind export logs` of the kept cluster into $CERTMINT_E2E_KIND_LOGS
#
# 1. creates a kind cluster (e2e/kind/kind-config.yaml);
# 2. builds the operator image from the repository's Dockerfile with Docker (base python:3.11-slim,
#    dependencies from PyPI) and pulls the workload image (python:3.11-slim-bookworm: python3 + OpenSSL);
# 3. `kind load docker-image` puts both on the node (the pods use imagePullPolicy: Never);
# 4. runs `pytest e2e` (mTLS and pod certificates) on that cluster; the suite's first scenario installs the
#    operator with `helm upgrade --install` of charts/certmint and the loaded image, as on the local node;
# 5. deletes the cluster (KEEP_CLUSTER=1 keeps it; on failure, CERTMINT_E2E_KIND_LOGS=DIR exports the
#    node logs there first).
#
# Needs: docker, kind, python3 (3.11+) with `make setup` done or doable; helm on PATH or fetched by
# tests/chart/get_helm.sh. Environment: KIND_NODE_IMAGE (default: kind v0.33.0's own default node image,
# by digest), CERTMINT_E2E_KIND_CLUSTER (certmint-e2e), CERTMINT_E2E_WORKLOAD_IMAGE.
#
# CERTMINT_KIND_NODE_IMAGE=local: for machines with no registry and no kind binary (this project's):
# kind is built from its Go module (e2e/kind/build-kind.sh), the node image from local parts
# (e2e/kind/build-node-image.sh: certmint.local/kind-node:<Kubernetes version>) with the config of
# e2e/kind/kind-config-local.yaml (cgroup v1, bridge CNI, the pod-certificate gates), the operator image
# offline by e2e/operator_image.py and the workload image by e2e/images/build.sh, both loaded with
# `kind load image-archive`. It runs its own dockerd (socket /run/certmint-kind-docker/docker.sock, data
# root /var/lib/certmint-kind-docker kept between runs: CERTMINT_KIND_DOCKER_RUN, CERTMINT_KIND_DOCKER_DATA;
# no iptables changes; runc through e2e/kind/runc-bounded) and stops it at the end. Needs root, Go,
# docker.io, debootstrap, gcc. CERTMINT_VENV: the virtualenv with the test dependencies (.venv);
# CERTMINT_E2E_OPERATOR_ARCHIVE: an operator image archive (`docker save`) to load instead of building one.
# CERTMINT_KIND_KUBECONFIG: with `up`, also write the cluster's kubeconfig to this path.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cluster=${CERTMINT_E2E_KIND_CLUSTER:-certmint-e2e}
# kind v0.33.0's default node image, as its source names it (sigs.k8s.io/kind@v0.33.0,
# pkg/apis/config/defaults/image.go:21, `const Image`): Kubernetes 1.37.0, by digest.
node_image=${KIND_NODE_IMAGE:-kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5}
image=certmint.local/certmint-operator:e2e
workload=${CERTMINT_E2E_WORKLOAD_IMAGE:-python:3.11-slim-bookworm}
config=e2e/kind/kind-config.yaml
local_mode=0
[ "${CERTMINT_KIND_NODE_IMAGE:-}" = local ] && local_mode=1
up_only=0
[ "${1:-}" = up ] && up_only=1
if [ "${1:-}" = down ] && [ "${CERTMINT_KIND_NODE_IMAGE:-}" != local ]; then
  exec kind delete cluster --name "$cluster"
fi
if [ "${1:-}" = logs ] && [ "${CERTMINT_KIND_NODE_IMAGE:-}" != local ]; then
  exec kind export logs --name "$cluster" "${CERTMINT_E2E_KIND_LOGS:?names the directory}"
fi
cd "$repo"
venv=${CERTMINT_VENV:-.venv}
work=$(mktemp -d)
dockerd_pid=""
started=""
created=0  # the cluster is this run's to delete only once it tried to create it

teardown() {
  rc=$?
  if [ "$rc" != 0 ] && [ -n "${CERTMINT_E2E_KIND_LOGS:-}" ]; then
    kind export logs --name "$cluster" "$CERTMINT_E2E_KIND_LOGS" >/dev/null 2>&1 || true
  fi
  if [ "$created" = 1 ] && { [ "${KEEP_CLUSTER:-0}" = 1 ] || { [ "$up_only" = 1 ] && [ "$rc" = 0 ]; }; }; then
    echo "run.sh: kept kind cluster $cluster (\`bash e2e/kind/run.sh down\` with the same environment deletes it)" >&2
    if [ -n "$dockerd_pid" ]; then
      echo "$dockerd_pid" >"$started"
      echo "run.sh: and its dockerd, pid $dockerd_pid (DOCKER_HOST=$DOCKER_HOST), which \`run.sh down\` stops" >&2
    fi
  else
    [ "$created" = 0 ] || kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    if [ -n "$dockerd_pid" ]; then
      kill "$dockerd_pid" 2>/dev/null || true
      wait "$dockerd_pid" 2>/dev/null || true
    fi
  fi
  rm -rf "$work"
  exit "$rc"
}
trap teardown EXIT

if [ "$local_mode" = 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "run.sh: CERTMINT_KIND_NODE_IMAGE=local needs root (dockerd)" >&2; exit 1; }
  command -v dockerd >/dev/null || { echo "run.sh: dockerd is required (apt-get install docker.io)" >&2; exit 1; }
  kind_bin=$(bash e2e/kind/build-kind.sh | tail -1)
  mkdir -p "$work/bin"
  ln -s "$kind_bin" "$work/bin/kind"
  # Debian's docker client matches Debian's daemon; kind calls `docker` from PATH.
  [ ! -x /usr/bin/docker ] || ln -s /usr/bin/docker "$work/bin/docker"
  export PATH="$work/bin:$PATH"
  run_dir=${CERTMINT_KIND_DOCKER_RUN:-/run/certmint-kind-docker}
  data_dir=${CERTMINT_KIND_DOCKER_DATA:-/var/lib/certmint-kind-docker}
  mkdir -p "$run_dir" "$data_dir"
  exec 8>"$run_dir/run.lock"
  flock 8  # one local-mode run at a time: they share this dockerd
  export DOCKER_HOST="unix://$run_dir/docker.sock"
  started="$run_dir/dockerd.started-by-run.sh"  # the PID of a dockerd that `run.sh up` started and kept
  if [ "${1:-}" = logs ]; then
    # Not exec: kind and docker are the links in $work/bin, which is removed only once kind is done.
    trap - EXIT
    rc=0
    kind export logs --name "$cluster" "${CERTMINT_E2E_KIND_LOGS:?names the directory}" || rc=$?
    rm -rf "$work"
    exit "$rc"
  fi
  if [ "${1:-}" = down ]; then
    ! docker version >/dev/null 2>&1 || kind delete cluster --name "$cluster"
    if [ -f "$started" ]; then
      pid=$(cat "$started")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      rm -f "$started"
    fi
    trap - EXIT
    rm -rf "$work"
    exit 0
  fi
  if ! docker version >/dev/null 2>&1; then
    # (8>&-: the daemon must not hold the run lock; it may outlive this run with `up`.)
    dockerd --host="$DOCKER_HOST" --data-root="$data_dir" --exec-root="$run_dir/exec" \
      --pidfile="$run_dir/dockerd.pid" --bridge=none --iptables=false --ip-masq=false \
      --add-runtime "certmint-runc=$repo/e2e/kind/runc-bounded" --default-runtime certmint-runc \
      >>"$run_dir/dockerd.log" 2>&1 8>&- &
    dockerd_pid=$!
    for _ in $(seq 120); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
    docker version >/dev/null 2>&1 || { echo "run.sh: dockerd did not answer (see $run_dir/dockerd.log)" >&2; exit 1; }
  fi
  if [ "$(docker info --format '{{.DefaultRuntime}}')" != certmint-runc ]; then
    echo "run.sh: the dockerd at $DOCKER_HOST does not run e2e/kind/runc-bounded; kind's privileged nodes fail here without it" >&2
    exit 1
  fi
  node_image=$(bash e2e/kind/build-node-image.sh | tail -1)
  config=e2e/kind/kind-config-local.yaml
  workload=certmint.local/e2e-workload:bookworm
fi
for tool in docker kind; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 1; }
done
[ "$up_only" = 1 ] || [ -x "$venv/bin/pytest" ] || make setup
[ "$up_only" = 1 ] || helm_bin=$(command -v helm || bash tests/chart/get_helm.sh | tail -1)

start=$(date +%s)
if [ "$local_mode" = 1 ]; then
  # A cluster of this name left by an interrupted run on our own dockerd: kind would refuse to create it.
  kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
fi
created=1
kind create cluster --name "$cluster" --image "$node_image" --config "$config" --wait 180s
if [ "$local_mode" = 1 ]; then
  # No registry here: both images are built offline and loaded as archives.
  operator_archive=${CERTMINT_E2E_OPERATOR_ARCHIVE:-}
  [ -n "$operator_archive" ] || operator_archive=$("$venv/bin/python" -m e2e.operator_image | tail -1)
  workload_archive=$(bash e2e/images/build.sh | tail -1)/workload.tar
  kind load image-archive --name "$cluster" "$operator_archive"
  kind load image-archive --name "$cluster" "$workload_archive"
else
  docker build --tag "$image" .
  docker pull "$workload"
  kind load docker-image --name "$cluster" "$image" "$workload"
fi
kind get kubeconfig --name "$cluster" >"$work/kubeconfig"
# `up` for a caller that has no kind on PATH (the e2e suite's session fixture, e2e/conftest.py): the kubeconfig here.
[ -z "${CERTMINT_KIND_KUBECONFIG:-}" ] || cp "$work/kubeconfig" "$CERTMINT_KIND_KUBECONFIG"
echo "run.sh: cluster ready and images loaded in $(( $(date +%s) - start ))s" >&2
if [ "$up_only" = 1 ]; then
  echo "run.sh: kubeconfig: kind get kubeconfig --name $cluster; workload image $workload, operator image $image" >&2
  exit 0
fi

CERTMINT_E2E_PROVIDER=kind \
CERTMINT_E2E_KIND_CLUSTER="$cluster" \
CERTMINT_E2E_KUBECONFIG="$work/kubeconfig" \
CERTMINT_E2E_IMAGE="$image" \
CERTMINT_E2E_WORKLOAD_IMAGE="$workload" \
HELM="$helm_bin" \
  "$venv/bin/pytest" e2e -m e2e -s -q -p no:cacheprovider
