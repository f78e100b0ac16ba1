#!/usr/bin/env bash
# Builds the kind CLI from its Go module (sigs.k8s.io/kind, pinned below) into a cache directory outside
# the repository, like tests/controlplane/build.sh does for the Kubernetes binaries: an unchanged pin and
# script never rebuild. Concurrent runs wait on a lock. Prints the binary's path on its last line.
#
# kind's go.mod has no replace directives, so `go install module@version` builds it as released; the
# module proxy (GOPROXY) serves it. KIND_VERSION overrides the pin (a different cache directory).
set -euo pipefail
version=${KIND_VERSION:-v0.33.0}
key=$( { cat "$0"; echo "$version"; } | sha256sum | cut -c1-12)
cache="${CERTMINT_CACHE:-$HOME/.cache/certmint}"
out="$cache/kind-$version-$key"
mkdir -p "$cache"
exec 9>"$cache/.kind-build.lock"
flock 9

if [ -x "$out/kind" ]; then
  echo "kind $version cached in $out" >&2
  echo "$out/kind"
  exit 0
fi
command -v go >/dev/null || { echo "build-kind.sh: Go is required to build kind" >&2; exit 1; }
tmp=$(mktemp -d "$cache/kind-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "building kind $version..." >&2
start=$(date +%s)
# -mod=mod: outside any module; -trimpath and no VCS stamping keep the binary independent of the paths here.
GOFLAGS=-mod=mod GOBIN="$tmp" CGO_ENABLED=0 \
  go install -trimpath -buildvcs=false -ldflags "-s -w" "sigs.k8s.io/kind@$version"
"$tmp/kind" version >&2
mkdir -p "$out"
mv "$tmp/kind" "$out/kind"
echo "built kind $version in $(( $(date +%s) - start ))s" >&2
echo "$out/kind"
