#!/usr/bin/env bash
# Installs what the e2e tier needs from Debian on this machine, if missing (needs root; idempotent):
# docker.io (the dockerd that runs the kind node, and the one that builds the operator image),
# debootstrap (the kind node's rootfs and the workload image), gcc + libc6-dev (static pause binary).
# Everything the node itself runs (systemd, containerd, runc, CNI plugins, iptables) is in the node
# image, from e2e/kind/node/packages.txt.
set -euo pipefail
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v gcc >/dev/null || need+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "e2e/setup.sh: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
