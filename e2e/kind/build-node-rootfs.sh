#!/usr/bin/env bash
# The Debian part of the local kind node image: a debootstrapped bookworm with systemd, Debian's
# containerd, runc and CNI plugins and the tools kind and the kubelet call (e2e/kind/node/packages.txt).
# Cached as a tar under ${CERTMINT_CACHE:-~/.cache/certmint}/kind-node/, keyed by this script and the
# package list, so an unchanged list never runs debootstrap again. Needs root and the Debian mirror apt
# uses (DEBIAN_MIRROR). Prints the tar's path on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
packages=$(grep -v '^#' "$here/node/packages.txt" | grep . | paste -sd,)
key=$(cat "$0" "$here/node/packages.txt" | sha256sum | cut -c1-12)
cache="${CERTMINT_CACHE:-$HOME/.cache/certmint}/kind-node"
out="$cache/rootfs-bookworm-$key.tar"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$cache"
exec 9>"$cache/.rootfs.lock"
flock 9

if [ -f "$out" ]; then
  echo "node rootfs cached in $out" >&2
  echo "$out"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "build-node-rootfs.sh: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "build-node-rootfs.sh: apt-get install debootstrap" >&2; exit 1; }
tmp=$(mktemp -d "$cache/rootfs-build.XXXXXX")
cleanup() {
  for m in proc sys dev/pts dev; do umount -l "$tmp/rootfs/$m" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
start=$(date +%s)
echo "debootstrapping the node rootfs (bookworm + $packages)..." >&2
debootstrap --variant=minbase --include="$packages" bookworm "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 || {
  tail -30 "$tmp/debootstrap.log" >&2
  exit 1
}
for m in proc sys dev/pts dev; do umount -l "$tmp/rootfs/$m" 2>/dev/null || true; done
r="$tmp/rootfs"
# Nothing of the package manager's caches, docs or logs; a machine-id is made at each boot.
rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/usr/share/doc/* "$r"/usr/share/man/* \
  "$r"/usr/share/info/* "$r"/var/log/* "$r"/var/cache/debconf/*-old
: >"$r/etc/machine-id"
# Debian enables the services its packages ship; the node's units are enabled by build-node-image.sh.
rm -f "$r"/etc/systemd/system/multi-user.target.wants/* "$r"/etc/systemd/system/timers.target.wants/*
tar --sort=name --numeric-owner -C "$r" -cf "$tmp/rootfs.tar" .
mv "$tmp/rootfs.tar" "$out"
echo "built node rootfs in $(( $(date +%s) - start ))s ($(du -h "$out" | cut -f1))" >&2
echo "$out"
