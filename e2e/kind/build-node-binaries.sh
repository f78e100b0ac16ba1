#!/usr/bin/env bash
# The Go-built parts of the local kind node image that tests/controlplane/build.sh does not build:
#   kubeadm  from the same pinned Kubernetes module as the control plane (tests/controlplane/kube/go.mod):
#            the module files are copied to a scratch module that builds cmd/kubeadm, so
#            tests/controlplane/ is not touched (go -mod=mod adds the go.sum lines kubeadm's extra
#            packages need; their versions come from the module graph the pin already fixes);
#   crictl   sigs.k8s.io/cri-tools v1.36.0, the version kind v0.33.0 puts in its base image
#            (images/base/Dockerfile:160, ARG CRICTL_VERSION); kind calls it in the node (`kind load`);
#   coredns  github.com/coredns/coredns v1.14.2, the version kubeadm v1.36.3 deploys
#            (cmd/kubeadm/app/constants/constants.go:372, CoreDNSVersion).
# Into a cache directory keyed by this script and the pin, so an unchanged pin never rebuilds.
# CERTMINT_KIND_NO_COREDNS=1 skips CoreDNS (then the node image has no CoreDNS image and the kind config
# must skip kubeadm's addon/coredns phase). Prints the directory holding the binaries on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mod="$here/../../tests/controlplane/kube"
version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$mod/go.mod")
crictl_version=v1.36.0
coredns_version=v1.14.2
key=$(cat "$0" "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-12)
cache="${CERTMINT_CACHE:-$HOME/.cache/certmint}"
out="$cache/kind-node-bins-$version-$key"
mkdir -p "$cache"
exec 9>"$cache/.kind-node-bins.lock"
flock 9

bins=(kubeadm crictl)
[ "${CERTMINT_KIND_NO_COREDNS:-0}" = 1 ] || bins+=(coredns)
missing=()
for b in "${bins[@]}"; do [ -x "$out/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "node binaries (${bins[*]}) cached in $out" >&2
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "build-node-binaries.sh: Go is required" >&2; exit 1; }
tmp=$(mktemp -d "$cache/kind-node-bins-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
for b in "${missing[@]}"; do
  echo "building $b..." >&2
  start=$(date +%s)
  case "$b" in
    kubeadm)
      mkdir -p "$tmp/kubeadm"
      cp "$mod/go.mod" "$mod/go.sum" "$tmp/kubeadm/"
      printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kubeadm"\n' >"$tmp/kubeadm/tools.go"
      # Stamp the release as upstream's build does (the same -X flags as tests/controlplane/build.sh).
      minor=$(echo "$version" | cut -d. -f2)
      flags=""
      for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
      done
      (cd "$tmp/kubeadm" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -buildvcs=false \
        -ldflags "-s -w $flags" -o "$tmp/kubeadm.bin" k8s.io/kubernetes/cmd/kubeadm)
      mv "$tmp/kubeadm.bin" "$out/kubeadm"
      ;;
    crictl)
      # cri-tools' go.mod has no replace directives: `go install module@version` builds it as released.
      GOFLAGS=-mod=mod GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -buildvcs=false \
        -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$crictl_version" \
        "sigs.k8s.io/cri-tools/cmd/crictl@$crictl_version"
      mv "$tmp/crictl" "$out/crictl"
      ;;
    coredns)
      GOFLAGS=-mod=mod GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -buildvcs=false -ldflags "-s -w" \
        "github.com/coredns/coredns@$coredns_version"
      mv "$tmp/coredns" "$out/coredns"
      ;;
  esac
  echo "built $b in $(( $(date +%s) - start ))s" >&2
done
"$out/kubeadm" version -o short >&2
"$out/crictl" --version >&2
[ ! -x "$out/coredns" ] || "$out/coredns" -version >&2
echo "$out"
