#!/usr/bin/env bash
# Builds the two images the local e2e node runs, without Docker and without
# any registry, as OCI archives that `ctr images import` takes:
#   pause.tar     certmint.local/pause:3.10        the pod sandbox (pause.c, static)
#   workload.tar  certmint.local/e2e-workload:bookworm
#                 a debootstrapped minimal Debian bookworm with Python 3
# Cached under ${CERTMINT_CACHE:-$HOME/.cache/certmint}/images/<hash of these
# build files>, so an unchanged script never rebuilds. Needs root (debootstrap),
# gcc with a static libc, and the Debian mirror apt uses.
# Prints the directory holding the archives on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
key=$(cat "$here/build.sh" "$here/oci.py" "$here/pause.c" | sha256sum | cut -c1-12)
cache="${CERTMINT_CACHE:-$HOME/.cache/certmint}/images"
out="$cache/$key"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm

if [ -f "$out/pause.tar" ] && [ -f "$out/workload.tar" ]; then
  echo "e2e images cached in $out" >&2
  echo "$out"
  exit 0
fi
for tool in gcc debootstrap tar python3; do
  command -v "$tool" >/dev/null || { echo "images/build.sh: $tool is required (apt-get install $tool)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "images/build.sh: debootstrap needs root" >&2; exit 1; }

tmp=$(mktemp -d)
cleanup() {
  # debootstrap may leave proc/sys mounted in the chroot if it fails half way
  for m in proc sys dev/pts dev; do umount -l "$tmp/rootfs/$m" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$out"

if [ ! -f "$out/pause.tar" ]; then
  start=$(date +%s)
  mkdir -p "$tmp/pause"
  gcc -static -Os -s -o "$tmp/pause/pause" "$here/pause.c"
  python3 "$here/oci.py" --rootfs "$tmp/pause" --name certmint.local/pause:3.10 \
    --entrypoint /pause --out "$out/pause.tar" >/dev/null
  echo "built pause image in $(( $(date +%s) - start ))s" >&2
fi

if [ ! -f "$out/workload.tar" ]; then
  start=$(date +%s)
  # minbase: only Essential packages plus apt; python3 for the mTLS client and
  # server scripts; nothing else.
  debootstrap --variant=minbase --include=python3 "$suite" "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 || {
    tail -30 "$tmp/debootstrap.log" >&2
    exit 1
  }
  for m in proc sys dev/pts dev; do umount -l "$tmp/rootfs/$m" 2>/dev/null || true; done
  rm -rf "$tmp/rootfs"/var/cache/apt/archives/*.deb "$tmp/rootfs"/var/lib/apt/lists/* \
    "$tmp/rootfs"/usr/share/doc/* "$tmp/rootfs"/usr/share/man/* "$tmp/rootfs"/usr/share/info/* \
    "$tmp/rootfs"/var/log/* "$tmp/rootfs"/var/cache/debconf/*-old "$tmp/rootfs"/etc/machine-id
  # the runtime writes these per container
  : > "$tmp/rootfs/etc/resolv.conf"
  : > "$tmp/rootfs/etc/hostname"
  python3 "$here/oci.py" --rootfs "$tmp/rootfs" --name certmint.local/e2e-workload:bookworm \
    --cmd /bin/bash --out "$out/workload.tar" >/dev/null
  echo "built workload image in $(( $(date +%s) - start ))s ($(du -m "$out/workload.tar" | cut -f1) MB)" >&2
fi
echo "$out"
