#!/usr/bin/env bash
# A smoke test of kind on this project's machines, without the e2e suite: `run.sh up` with the local node
# image (kind built from its module, node image from local parts, own dockerd, operator and workload images
# loaded), then one pod from the workload image that reaches the API server through the `kubernetes`
# Service and resolves cluster names through CoreDNS; then `run.sh down` deletes the cluster and stops
# the dockerd if `up` started it. Prints the time of each step. Needs what run.sh's local mode needs.
#
#   bash e2e/kind/smoke.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cluster=${CERTMINT_E2E_KIND_CLUSTER:-certmint-kind-smoke}
run_dir=${CERTMINT_KIND_DOCKER_RUN:-/run/certmint-kind-docker}
export CERTMINT_KIND_NODE_IMAGE=local CERTMINT_E2E_KIND_CLUSTER="$cluster"
docker_host="unix://$run_dir/docker.sock"
docker_cli=/usr/bin/docker
[ -x "$docker_cli" ] || docker_cli=$(command -v docker)

kind=$(bash "$here/build-kind.sh" | tail -1)
kubectl="$(bash "$repo/tests/controlplane/build.sh" | tail -1)/kubectl"
work=$(mktemp -d)
cleanup() {
  rc=$?
  bash "$here/run.sh" down >/dev/null 2>&1 || true  # the cluster, and the dockerd if `up` started it
  rm -rf "$work"
  [ "$rc" = 0 ] && echo "smoke: passed" >&2 || echo "smoke: FAILED ($rc)" >&2
  exit "$rc"
}
trap cleanup EXIT
mkdir -p "$work/bin"
ln -s "$docker_cli" "$work/bin/docker"

t0=$(date +%s)
bash "$here/run.sh" up
t1=$(date +%s)
DOCKER_HOST=$docker_host PATH="$work/bin:$PATH" "$kind" get kubeconfig --name "$cluster" >"$work/kubeconfig"
k() { "$kubectl" --kubeconfig "$work/kubeconfig" "$@"; }
k get nodes -o wide
k apply -f - <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: certmint-smoke}
spec:
  restartPolicy: Never
  containers:
    - name: smoke
      image: certmint.local/e2e-workload:bookworm
      imagePullPolicy: Never
      command:
        - python3
        - -c
        - |
          import socket, ssl, sys
          print("pod", socket.gethostname(), "python", sys.version.split()[0], ssl.OPENSSL_VERSION)
          for name in ("kubernetes.default.svc.cluster.local", "kube-dns.kube-system.svc.cluster.local"):
              for attempt in range(60):  # CoreDNS may still be starting
                  try:
                      print(name, "->", socket.gethostbyname(name))
                      break
                  except OSError:
                      if attempt == 59:
                          raise
                      import time; time.sleep(2)
          s = socket.create_connection(("kubernetes.default.svc.cluster.local", 443), timeout=10)
          print("API server reached through the kubernetes Service:", s.getpeername())
EOF
phase=""
for _ in $(seq 180); do
  phase=$(k get pod certmint-smoke -o jsonpath='{.status.phase}')
  [ "$phase" = Succeeded ] || [ "$phase" = Failed ] && break
  sleep 1
done
k logs certmint-smoke || true
t2=$(date +%s)
echo "smoke: run.sh up $((t1 - t0))s, pod $((t2 - t1))s, phase $phase" >&2
[ "$phase" = Succeeded ]
