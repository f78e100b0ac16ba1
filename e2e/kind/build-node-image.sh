#!/usr/bin/env bash
# Builds the kind node image certmint.local/kind-node:<Kubernetes version> from local parts only, into
# the Docker daemon that DOCKER_HOST names (for kind to run with `--image`), for machines where no node
# image can be pulled:
#   - a debootstrapped Debian bookworm with systemd, Debian's containerd, runc and CNI plugins
#     (build-node-rootfs.sh, cached);
#   - kubelet, kubectl and the control-plane binaries from the pinned Kubernetes module
#     (tests/controlplane/build.sh), kubeadm, crictl and CoreDNS (build-node-binaries.sh);
#   - the images kubeadm runs, named as kubeadm v1.36.3 asks for them (registry.k8s.io/kube-apiserver:v1.36.3
#     and so on, etcd 3.6.8-0, coredns v1.14.2, pause 3.10.2), each one layer holding our binary
#     (e2e/images/oci.py), baked in under /kind/images and imported into the node's containerd at its
#     first boot (certmint-images.service);
#   - the node's own files (e2e/kind/node/): entrypoint, containerd config, systemd units, a bridge CNI
#     config, /kind/version.
# What a node must contain was read from kind v0.33.0's sources (images/base, pkg/build/nodeimage,
# pkg/cluster/internal); the files here are this project's own.
#
# Idempotent: the image carries a label with the key of everything it was built from, and an image with
# the same key is not built again. Prints the image name on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# Debian's client matches Debian's daemon (another `docker` on PATH may be a newer client only).
docker_cli=/usr/bin/docker
[ -x "$docker_cli" ] || docker_cli=$(command -v docker)
docker() { "$docker_cli" "$@"; }

bin_dir=$(bash "$repo/tests/controlplane/build.sh" | tail -1)
node_bins=$(bash "$here/build-node-binaries.sh" | tail -1)
rootfs_tar=$(bash "$here/build-node-rootfs.sh" | tail -1)
version=$("$bin_dir/kubelet" --version | awk '{print $2}')
image="certmint.local/kind-node:$version"
key=$( { cat "$0" "$here"/node/* "$repo/e2e/images/oci.py" "$repo/e2e/images/pause.c";
         echo "$bin_dir $node_bins $rootfs_tar"; } | sha256sum | cut -c1-12)
label=dev.certmint.kind-node.key

if [ "$(docker image inspect --format "{{index .Config.Labels \"$label\"}}" "$image" 2>/dev/null)" = "$key" ]; then
  echo "node image $image ($key) already built" >&2
  echo "$image"
  exit 0
fi
start=$(date +%s)
previous=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
r="$tmp/rootfs"
mkdir -p "$r"
tar -C "$r" -xf "$rootfs_tar"

# -- the images kubeadm will run, named as it asks for them ------------------------------------------
# Versions: kubeadm v1.36.3's cmd/kubeadm/app/constants/constants.go (DefaultEtcdVersion "3.6.8-0",
# CoreDNSVersion "v1.14.2", PauseVersion "3.10.2"); the etcd built by tests/controlplane/build.sh is 3.6.8.
images="$r/kind/images"
mkdir -p "$images"
oci() { # name rootfs entrypoint...
  local name=$1 root=$2
  shift 2
  local args=()
  for e in "$@"; do args+=(--entrypoint "$e"); done
  python3 "$repo/e2e/images/oci.py" --rootfs "$root" --name "$name" "${args[@]}" \
    --out "$images/$(basename "${name%%:*}").tar" >/dev/null
}
one_binary_root() { # dir binary...
  local dir=$1
  shift
  mkdir -p "$dir/usr/local/bin" "$dir/tmp" "$dir/etc"
  chmod 1777 "$dir/tmp"
  for b in "$@"; do cp "$b" "$dir/usr/local/bin/"; done
  echo "root:x:0:0:root:/root:/sbin/nologin" >"$dir/etc/passwd"
  echo "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin" >>"$dir/etc/passwd"
}
for component in kube-apiserver kube-controller-manager kube-scheduler; do
  one_binary_root "$tmp/img-$component" "$bin_dir/$component"
  oci "registry.k8s.io/$component:$version" "$tmp/img-$component"
done
one_binary_root "$tmp/img-etcd" "$bin_dir/etcd"
oci "registry.k8s.io/etcd:3.6.8-0" "$tmp/img-etcd"
# kube-proxy (iptables mode) runs iptables-save/-restore: the node rootfs's nft-backed xtables binary,
# its extension modules and libraries, and the files it reads (/etc/protocols, /etc/services).
kp="$tmp/img-kube-proxy"
one_binary_root "$kp" "$bin_dir/kube-proxy"
mkdir -p "$kp/usr/sbin"
cp -a "$r/usr/sbin/xtables-nft-multi" "$kp/usr/sbin/"
for name in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -s xtables-nft-multi "$kp/usr/sbin/$name"
done
libdir=usr/lib/x86_64-linux-gnu
mkdir -p "$kp/$libdir" "$kp/usr/lib64"
ln -s usr/lib "$kp/lib"  # merged /usr, as in the rootfs the libraries come from
ln -s usr/lib64 "$kp/lib64"
cp -a "$r/$libdir/xtables" "$kp/$libdir/"
# The shared libraries xtables-nft-multi and its extensions load, resolved inside the node rootfs.
for lib in $(chroot "$r" sh -c "ldd /usr/sbin/xtables-nft-multi /$libdir/xtables/*.so" | awk '$2 == "=>" {print $3} $1 ~ /^\// && $1 !~ /:$/ {print $1}' | sort -u); do
  cp -L "$r$lib" "$kp$lib"
done
cp "$r/etc/protocols" "$r/etc/services" "$kp/etc/"
oci "registry.k8s.io/kube-proxy:$version" "$kp"
if [ -x "$node_bins/coredns" ]; then
  mkdir -p "$tmp/img-coredns"
  cp "$node_bins/coredns" "$tmp/img-coredns/coredns"
  oci "registry.k8s.io/coredns/coredns:v1.14.2" "$tmp/img-coredns" /coredns
fi
mkdir -p "$tmp/img-pause"
gcc -static -Os -s -o "$tmp/img-pause/pause" "$repo/e2e/images/pause.c"
oci "registry.k8s.io/pause:3.10.2" "$tmp/img-pause" /pause

# -- Kubernetes binaries and kind's files ------------------------------------------------------------
install -m 0755 "$bin_dir/kubelet" "$bin_dir/kubectl" "$node_bins/kubeadm" "$r/usr/bin/"
install -m 0755 "$node_bins/crictl" "$r/usr/local/bin/"
install -m 0755 "$here/node/entrypoint" "$r/usr/local/bin/certmint-kind-entrypoint"
install -m 0755 "$here/node/import-images" "$r/usr/local/bin/certmint-import-images"
echo "$version" >"$r/kind/version"  # kind reads the node's Kubernetes version here
mkdir -p "$r/etc/containerd" "$r/etc/cni/net.d" "$r/etc/kubernetes/manifests"
install -m 0644 "$here/node/containerd.toml" "$r/etc/containerd/config.toml"
install -m 0644 "$here/node/cni.conflist" "$r/etc/cni/net.d/10-certmint-bridge.conflist"
install -m 0644 "$here/node/crictl.yaml" "$r/etc/crictl.yaml"
install -m 0644 "$here/node/kubelet.default" "$r/etc/default/kubelet"
mkdir -p "$r/etc/systemd/journald.conf.d"
install -m 0644 "$here/node/journald.conf" "$r/etc/systemd/journald.conf.d/certmint.conf"
for unit in containerd.service kubelet.service kubelet.slice certmint-images.service; do
  install -m 0644 "$here/node/$unit" "$r/etc/systemd/system/$unit"
done
mkdir -p "$r/etc/systemd/system/multi-user.target.wants"
for unit in containerd.service kubelet.service certmint-images.service; do
  ln -sf "/etc/systemd/system/$unit" "$r/etc/systemd/system/multi-user.target.wants/$unit"
done
# Nothing in a node container for these to do (no devices, no binfmt, no consoles).
for unit in systemd-udevd.service systemd-udev-trigger.service systemd-binfmt.service getty@tty1.service \
  console-getty.service systemd-modules-load.service; do
  ln -sf /dev/null "$r/etc/systemd/system/$unit"
done
[ -e "$r/sbin/init" ] || ln -s /lib/systemd/systemd "$r/sbin/init"

# -- the image --------------------------------------------------------------------------------------
# `docker import` cannot set a stop signal; a one-line build on top of the imported tree does.
base="certmint.local/kind-node-rootfs:$key"
tar --numeric-owner -C "$r" -c . | docker import \
  --change 'ENV container=docker' \
  --change 'ENTRYPOINT ["/usr/local/bin/certmint-kind-entrypoint", "/sbin/init"]' \
  - "$base" >/dev/null
mkdir -p "$tmp/context"
# systemd stops on SIGRTMIN+3 (what `docker stop` then sends), not on SIGTERM.
printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\nLABEL %s=%s\n' "$base" "$label" "$key" >"$tmp/context/Dockerfile"
DOCKER_BUILDKIT=0 docker build --quiet --tag "$image" "$tmp/context" >/dev/null
docker rmi "$base" >/dev/null
# The image this one replaces (about 1 GB), unless a container still uses it.
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect --format '{{.Id}}' "$image")" ]; then
  docker rmi "$previous" >/dev/null 2>&1 || true
fi
echo "built node image $image ($key) in $(( $(date +%s) - start ))s" >&2
echo "$image"
