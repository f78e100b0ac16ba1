#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl, etcd and, for the
# e2e node, kubelet, kube-scheduler and kube-proxy from the pinned Go module
# in ./kube, into a cache directory outside the repository keyed by the
# module's content, so an unchanged pin never rebuilds. Concurrent runs wait
# for each other on a lock instead of building into the same directory.
# Prints the directory holding the binaries on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mod="$here/kube"
version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$mod/go.mod")
key=$(cat "$0" "$mod/go.mod" "$mod/go.sum" "$mod/etcd/main.go" | sha256sum | cut -c1-12)
cache="${CERTMINT_CACHE:-$HOME/.cache/certmint}"
out="$cache/kube-$version-$key"
mkdir -p "$cache"
exec 9>"$cache/.build.lock"
flock 9
bins=(kube-apiserver kube-controller-manager kubectl etcd kubelet kube-scheduler kube-proxy)

missing=()
for b in "${bins[@]}"; do [ -x "$out/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "control-plane binaries $version cached in $out" >&2
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: Go is required to build the control plane" >&2; exit 1; }
# Stamp the release into /version as upstream's build does (its Makefile passes these -X flags).
minor=$(echo "$version" | cut -d. -f2)
version_flags=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_flags+=" -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
mkdir -p "$out.tmp"
cd "$mod"
for b in "${missing[@]}"; do
  case "$b" in
    etcd) pkg=./etcd ;;
    *) pkg=k8s.io/kubernetes/cmd/$b ;;
  esac
  echo "building $b ($version)..." >&2
  start=$(date +%s)
  # -trimpath and no VCS stamping keep the output independent of where the
  # repository lives; -s -w drops debug info (smaller, faster to link).
  CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w $version_flags" -o "$out.tmp/$b" "$pkg"
  echo "built $b in $(( $(date +%s) - start ))s" >&2
done
mkdir -p "$out"
for b in "${missing[@]}"; do mv "$out.tmp/$b" "$out/$b"; done
rmdir "$out.tmp" 2>/dev/null || true
echo "$out"
