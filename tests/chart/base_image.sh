#!/usr/bin/env bash
# Makes the base image the image test builds on, without any registry: a minimal
# Debian bookworm root filesystem (debootstrap from the Debian mirror apt uses)
# with Python 3.11 and its venv module, packed as a tarball for `docker import`.
# Users build the Dockerfile on python:3.11-slim; this stands in for it here.
#
# Cached as ${CERTMINT_CACHE:-$HOME/.cache/certmint}/base-image/<hash of this script>.tar,
# so an unchanged script never rebuilds. Needs root and debootstrap.
# Prints the tarball's path on its last line.
set -euo pipefail
key=$(sha256sum "$0" | cut -c1-12)
cache="${CERTMINT_CACHE:-$HOME/.cache/certmint}/base-image"
out="$cache/bookworm-python3-$key.tar"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ -f "$out" ]; then
  echo "base image cached in $out" >&2
  echo "$out"
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "base_image.sh: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "base_image.sh: debootstrap is required (apt-get install debootstrap)" >&2; exit 1; }

tmp=$(mktemp -d)
cleanup() {
  # debootstrap may leave proc/sys mounted in the chroot if it fails half way.
  for m in proc sys dev/pts dev; do umount -l "$tmp/rootfs/$m" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

start=$(date +%s)
# minbase: only Essential packages and apt; python3-venv brings ensurepip, which `python3 -m venv` needs.
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 \
  || { tail -30 "$tmp/debootstrap.log" >&2; exit 1; }
# What an image never needs: package caches and lists, documentation, manuals, translations.
rm -rf "$tmp"/rootfs/var/cache/apt/archives/*.deb "$tmp"/rootfs/var/lib/apt/lists/* \
  "$tmp"/rootfs/usr/share/doc/* "$tmp"/rootfs/usr/share/man/* "$tmp"/rootfs/usr/share/info/* \
  "$tmp"/rootfs/usr/share/locale/* "$tmp"/rootfs/var/log/*.log "$tmp"/rootfs/var/cache/debconf/*-old
mkdir -p "$cache"
tar -C "$tmp/rootfs" --numeric-owner -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "built base image rootfs in $(( $(date +%s) - start ))s: $(du -h "$out" | cut -f1)" >&2
echo "$out"
