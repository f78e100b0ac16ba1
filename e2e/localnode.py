"""A real single-node Kubernetes cluster on this machine, for the e2e tier.

On top of the control plane of ``tests/controlplane/cluster.py`` (etcd,
kube-apiserver, kube-controller-manager) this starts a real node:

* containerd (Debian's package) with its own config, root, state and socket,
  runc as its runtime, the bridge + host-local CNI plugins (Debian's
  ``containernetworking-plugins``);
* the images the node runs, imported from local OCI archives made by
  ``e2e/images/build.sh`` (no registry is ever contacted);
* kubelet, kube-scheduler and kube-proxy (iptables mode) built from the same
  Kubernetes release as the control plane (``tests/controlplane/build.sh``).

Everything it creates is named after one *slot* N (0-199) chosen free at
start: the bridge ``cmbrN`` with the node's address 10.250.N.1/24, pod
addresses from 10.250.N.0/24, the cgroup parent ``/certmint-N``, the
iptables chain ``CERTMINT-N``. Pod traffic stays on that bridge: pods get no
default route and the ``CERTMINT-N`` chain drops any forwarded packet from
the pod range to an address outside it.

Identities are client certificates signed by the control plane's CA:
``system:node:<node>`` (group ``system:nodes``) for the kubelet,
``system:kube-scheduler``, and ``kube-apiserver-kubelet-client`` (group
``system:masters``) which the API server presents to the kubelet (for logs,
exec). The kubelet serves a certificate from the same CA, and checks callers
by x509 and SubjectAccessReview (no anonymous access).

Command line::

    python -m e2e.localnode up --dir .local/node     # control plane + node; prints the admin kubeconfig
    python -m e2e.localnode down --dir .local/node   # stops everything, removes bridge, rules, mounts, cgroups
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tests.controlplane.cluster import (
    ControlPlane,
    ControlPlaneError,
    _alive,
    _http_get,
    _pem_key,
    _write,
    build_binaries,
    free_port,
    load,
    stop_recorded,
    wait_ready,
)
from tests.x509util import certificate_builder

HERE = Path(__file__).resolve().parent
PAUSE_IMAGE = "certmint.local/pause:3.10"
WORKLOAD_IMAGE = "certmint.local/e2e-workload:bookworm"
NODE_NAME = "certmint-node"
CNI_BIN_DIR = Path("/usr/lib/cni")
SERVICE_CIDR = "10.0.0.0/24"  # cluster.py's --service-cluster-ip-range
NODE_READY_TIMEOUT = 180.0
# Debian packages the node needs (bookworm: containerd 1.6.20, runc 1.1.5, CNI plugins 1.1.1).
APT_PACKAGES = ("containerd", "runc", "containernetworking-plugins", "iptables", "debootstrap", "gcc", "libc6-dev")


class LocalNodeError(ControlPlaneError):
    """The node could not be started; the message says which part and where its log is."""


# -- prerequisites -------------------------------------------------------------------------------------


def missing_prerequisites() -> list[str]:
    """What this machine lacks for a local node, as human-readable reasons (empty: all there)."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("a real node needs root (mounts, cgroups, network namespaces)")
    for tool in ("containerd", "ctr", "runc", "iptables", "ip"):
        if shutil.which(tool) is None:
            reasons.append(f"{tool} not found (apt-get install {' '.join(APT_PACKAGES)})")
    for plugin in ("bridge", "host-local", "loopback"):
        if not (CNI_BIN_DIR / plugin).exists():
            reasons.append(f"CNI plugin {CNI_BIN_DIR / plugin} not found (apt-get install containernetworking-plugins)")
    if not Path("/sys/fs/cgroup").exists():
        reasons.append("no /sys/fs/cgroup")
    return reasons


def build_images() -> Path:
    """Build (or find cached) the pause and workload image archives; returns their directory."""
    proc = subprocess.run(["bash", str(HERE / "images" / "build.sh")], stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise LocalNodeError(f"building the e2e images failed (exit {proc.returncode})")
    return Path(proc.stdout.strip().splitlines()[-1])


# -- certificates --------------------------------------------------------------------------------------


def issue_cert(
    pki: Path,
    name: str,
    common_name: str,
    organizations: tuple[str, ...] = (),
    *,
    client: bool = True,
    server_ips: tuple[str, ...] = (),
    server_dns: tuple[str, ...] = (),
) -> tuple[Path, Path]:
    """A key and certificate signed by the control plane's CA (``pki/ca.crt`` + ``pki/ca.key``)."""
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    now = datetime.datetime.now(datetime.UTC)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    if server_ips or server_dns:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    validity = (now - datetime.timedelta(minutes=5), ca_cert.not_valid_after_utc)
    builder = (
        certificate_builder(x509.Name(attrs), key.public_key(), *validity, issuer=ca_cert.subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if server_ips or server_dns:
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in server_dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    key_path = _write(pki / f"{name}.key", _pem_key(key))
    cert_path = _write(pki / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cert_kubeconfig(path: Path, server: str, ca_pem: bytes, user: str, cert: Path, key: Path) -> Path:
    b64 = _b64
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "certmint-local", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert.read_bytes()), "client-key-data": b64(key.read_bytes())},
            }
        ],
        "contexts": [{"name": user, "context": {"cluster": "certmint-local", "user": user}}],
        "current-context": user,
    }
    return _write(path, json.dumps(config, indent=2))


# -- network -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """The names and addresses of one node, all derived from one number."""

    n: int

    @property
    def bridge(self) -> str:
        return f"cmbr{self.n}"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.250.{self.n}.0/24")

    @property
    def node_ip(self) -> str:
        return f"10.250.{self.n}.1"

    @property
    def chain(self) -> str:
        return f"CERTMINT-{self.n}"

    @property
    def cgroup_root(self) -> str:
        return f"/certmint-{self.n}"

    @property
    def run_dir(self) -> Path:
        # Short on purpose: unix socket paths are limited to 107 bytes.
        return Path(f"/run/certmint-{self.n}")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LocalNodeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def pick_slot(workdir: Path) -> Slot:
    """A slot whose bridge does not exist yet, starting from a hash of the workdir."""
    used = set(_run("ip", "-o", "link", "show").stdout.split())
    start = int(hashlib.sha256(str(workdir).encode()).hexdigest(), 16) % 200
    for i in range(200):
        slot = Slot((start + i) % 200)
        if f"{slot.bridge}:" not in used and not slot.run_dir.exists():
            return slot
    raise LocalNodeError("no free node slot (200 bridges cmbrN exist?)")


def setup_network(slot: Slot) -> None:
    """The node's bridge with its address, and the rules that keep pod traffic on it."""
    _run("ip", "link", "add", slot.bridge, "type", "bridge")
    _run("ip", "addr", "add", f"{slot.node_ip}/{slot.subnet.prefixlen}", "dev", slot.bridge)
    _run("ip", "link", "set", slot.bridge, "up")
    subnet = str(slot.subnet)
    _run("iptables", "-w", "-N", slot.chain)
    # Between pods of this node (also after kube-proxy's DNAT of a ClusterIP to a pod): allowed.
    _run("iptables", "-w", "-A", slot.chain, "-s", subnet, "-d", subnet, "-j", "ACCEPT")
    # Anything else forwarded from or to the pod range: dropped. Pods never reach past the bridge.
    _run("iptables", "-w", "-A", slot.chain, "-s", subnet, "-j", "DROP")
    _run("iptables", "-w", "-A", slot.chain, "-d", subnet, "-j", "DROP")
    _run("iptables", "-w", "-I", "FORWARD", "1", "-j", slot.chain)


def teardown_network(slot: Slot) -> None:
    _run("iptables", "-w", "-D", "FORWARD", "-j", slot.chain, check=False)
    _run("iptables", "-w", "-F", slot.chain, check=False)
    _run("iptables", "-w", "-X", slot.chain, check=False)
    _run("ip", "link", "del", slot.bridge, check=False)


def cni_config(slot: Slot, ipam_dir: Path) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": f"certmint-{slot.n}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": slot.bridge,
                "isGateway": True,  # the bridge holds the node address, the pods' gateway
                "ipMasq": False,  # nothing leaves the node, so nothing to masquerade
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(slot.subnet), "rangeStart": str(slot.subnet[10])}]],
                    # No default route: a pod reaches its node's pods and ClusterIPs, nothing else.
                    "routes": [{"dst": str(slot.subnet)}, {"dst": SERVICE_CIDR}],
                    "dataDir": str(ipam_dir),
                },
            }
        ],
    }


# -- the control plane, with what a node needs from it --------------------------------------------------

# The beta APIs of certificates.k8s.io/v1beta1 the e2e scenarios use, off by default in Kubernetes 1.36:
# - ClusterTrustBundles: serving them needs the ClusterTrustBundle gate and the API version; mounting one in a pod
#   (a projected volume's ``clusterTrustBundle`` source) needs ClusterTrustBundleProjection on both sides: the API
#   server silently drops the source from a new pod while it is off (pkg/api/pod/util.go,
#   dropDisabledClusterTrustBundleProjection), and only a kubelet with it on starts its ClusterTrustBundle informer
#   (pkg/kubelet/kubelet.go). The gate declares ClusterTrustBundle as its dependency, and a component refuses to
#   start with one on and the other off.
# - PodCertificateRequests: the API server serves them and keeps a pod's ``podCertificate`` source only with the
#   PodCertificateRequest gate (it drops the source from a new pod otherwise, pkg/api/pod/util.go); a kubelet without
#   it fails every such mount (a no-op manager, pkg/kubelet/kubelet.go).
NODE_FEATURE_GATES = {"ClusterTrustBundle": True, "ClusterTrustBundleProjection": True, "PodCertificateRequest": True}
NODE_APIS = (
    "certificates.k8s.io/v1beta1/clustertrustbundles=true",
    "certificates.k8s.io/v1beta1/podcertificaterequests=true",
)


def with_node_apis(argv: list[str]) -> list[str]:
    """kube-apiserver's ``argv`` with NODE_FEATURE_GATES added to its feature gates and NODE_APIS to its runtime
    config (each kept as one flag, merged with what ``argv`` sets)."""
    gates: dict[str, str] = {}
    runtime: list[str] = []
    rest = []
    for arg in argv:
        flag, _, value = arg.partition("=")
        if flag == "--feature-gates":
            for item in filter(None, value.split(",")):
                name, _, on = item.partition("=")
                gates[name] = on
        elif flag == "--runtime-config":
            runtime += filter(None, value.split(","))
        else:
            rest.append(arg)
    gates.update({name: str(on).lower() for name, on in NODE_FEATURE_GATES.items()})
    runtime += [api for api in NODE_APIS if api not in runtime]
    feature_gates = ",".join(f"{name}={on}" for name, on in gates.items())
    return [*rest, f"--feature-gates={feature_gates}", f"--runtime-config={','.join(runtime)}"]


@dataclass
class NodeControlPlane(ControlPlane):
    """``ControlPlane`` whose API server can talk to a kubelet and be reached from pods.

    Adds to kube-apiserver: a client certificate for calling kubelets and the
    CA to verify them, NodeRestriction admission, and (with ``pod_ip``) an
    address on the node's bridge so that pods reach it through the
    ``kubernetes`` Service.
    """

    pod_ip: str = ""

    def _spawn(self, name: str, argv: list[str]) -> None:
        if name == "kube-apiserver":
            pki = self.workdir / "pki"
            cert, key = issue_cert(
                pki, "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
            )
            argv = [*argv, f"--kubelet-client-certificate={cert}", f"--kubelet-client-key={key}"]
            argv = with_node_apis(argv)
            argv += [f"--kubelet-certificate-authority={pki / 'ca.crt'}", "--enable-admission-plugins=NodeRestriction"]
            # Reach kubelets by the Node's InternalIP (on the node's bridge), never by resolving its name:
            # the default order starts with Hostname, a DNS query to this machine's resolver.
            argv.append("--kubelet-preferred-address-types=InternalIP")
            if self.pod_ip:
                # Serve on the node's bridge address only (reachable from this machine and its pods, not
                # on eth0), and re-issue the serving certificate for the names pods use: the Service IP
                # 10.0.0.1 and kubernetes.default. Everyone, on the machine too, then uses that address.
                api_cert, api_key = issue_cert(
                    pki,
                    "apiserver-node",
                    "kube-apiserver",
                    client=False,
                    server_ips=("127.0.0.1", self.pod_ip, "10.0.0.1"),
                    server_dns=(
                        "localhost",
                        "kubernetes",
                        "kubernetes.default",
                        "kubernetes.default.svc",
                        "kubernetes.default.svc.cluster.local",
                    ),
                )
                replaced = {
                    "--bind-address": self.pod_ip,
                    "--advertise-address": self.pod_ip,
                    "--tls-cert-file": str(api_cert),
                    "--tls-private-key-file": str(api_key),
                }
                argv = [
                    f"{a.split('=', 1)[0]}={replaced[a.split('=', 1)[0]]}" if a.split("=", 1)[0] in replaced else a
                    for a in argv
                ]
                port = next(a.split("=", 1)[1] for a in argv if a.startswith("--secure-port="))
                # start() wrote 127.0.0.1 here; the kubeconfigs and readiness checks are made after this.
                self.server = f"https://{self.pod_ip}:{port}"
        super()._spawn(name, argv)


# -- the node ------------------------------------------------------------------------------------------


@dataclass
class LocalNode:
    """containerd + kubelet + kube-scheduler + kube-proxy for one control plane; state in ``workdir``."""

    cp: ControlPlane
    workdir: Path
    slot: Slot
    image_dir: Path
    node_name: str = NODE_NAME
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def containerd_socket(self) -> Path:
        return self.slot.run_dir / "containerd.sock"

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args, check=check)

    # -- start ---------------------------------------------------------------------------------------

    def start(self) -> None:
        t0 = time.monotonic()
        if _run("iptables", "-w", "-t", "nat", "-S", "KUBE-SERVICES", check=False).returncode == 0:
            # kube-proxy's chains have fixed names: two on one machine would rewrite each other's rules.
            raise LocalNodeError(
                "iptables chain KUBE-SERVICES exists: another kube-proxy runs (or ran) on this machine. "
                "Stop its node (python -m e2e.localnode down --dir ...) or clear it with `kube-proxy --cleanup`."
            )
        for sub in ("logs", "pki", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "containerd/root"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.slot.run_dir.mkdir(parents=True, exist_ok=True)
        self._save_state()
        if not self._bridge_exists():
            setup_network(self.slot)
        _write(
            self.workdir / "cni/net.d/10-certmint.conflist",
            json.dumps(cni_config(self.slot, self.workdir / "cni/ipam"), indent=2),
            0o644,
        )

        self._start_containerd()
        self.timings["containerd_ready_s"] = round(time.monotonic() - t0, 2)
        t = time.monotonic()
        for archive in ("pause.tar", "workload.tar"):
            self.ctr("images", "import", str(self.image_dir / archive))
        listed = self.ctr("images", "ls", "-q").stdout.split()
        for image in (PAUSE_IMAGE, WORKLOAD_IMAGE):
            if image not in listed:
                raise LocalNodeError(f"image {image} not in containerd after import (have: {listed})")
        self.timings["images_imported_s"] = round(time.monotonic() - t, 2)

        t = time.monotonic()
        self._start_kubelet()
        self._start_scheduler()
        self._start_proxy()
        self._wait("kubelet", self._node_ready, NODE_READY_TIMEOUT)
        self.timings["node_ready_s"] = round(time.monotonic() - t, 2)
        self.timings["total_s"] = round(time.monotonic() - t0, 2)
        _write(self.workdir / "node-timings.json", json.dumps(self.timings), 0o644)
        print(f"node {self.node_name} Ready at {self.slot.node_ip}: {self.timings}", file=sys.stderr)

    def _bridge_exists(self) -> bool:
        return _run("ip", "link", "show", self.slot.bridge, check=False).returncode == 0

    def _save_state(self) -> None:
        state = {
            "slot": self.slot.n,
            "node_name": self.node_name,
            "image_dir": str(self.image_dir),
            "bin_dir": str(self.cp.bin_dir),
        }
        _write(self.workdir / "node-state.json", json.dumps(state), 0o644)

    def _start_containerd(self) -> None:
        root, run = self.workdir / "containerd/root", self.slot.run_dir
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""\
version = 2
root = "{root}"
state = "{run / "state"}"
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{self.containerd_socket}"

[ttrpc]
  address = "{run / "containerd.sock.ttrpc"}"

[debug]
  address = ""

[metrics]
  address = ""

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  netns_mounts_under_state_dir = true
  # This sandbox withholds CAP_SYS_RESOURCE, so no process may lower its oom_score_adj;
  # the CRI plugin's -998 for pod sandboxes would make runc fail ("can't get final child's PID").
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  BinaryName = "{shutil.which("runc") or "/usr/sbin/runc"}"
  Root = "{run / "runc"}"
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{self.workdir / "cni/net.d"}"
  max_conf_num = 1

[{cri}.registry]
  config_path = ""
"""
        conf = _write(self.workdir / "containerd.toml", config, 0o644)
        self._spawn("containerd", ["containerd", "--config", str(conf), "--log-level", "info"])

        def ready() -> bool:
            if not self.containerd_socket.exists():
                return False
            return self.ctr("version", check=False).returncode == 0

        self._wait("containerd", ready, 60.0)

    def _make_cgroup_root(self) -> None:
        """The kubelet wants its cgroupRoot to exist in every cgroup v1 hierarchy."""
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            if hierarchy.name == "unified" or not (hierarchy / "cgroup.procs").exists():
                continue
            top = hierarchy / self.slot.cgroup_root.lstrip("/")
            top.mkdir(exist_ok=True)
            if hierarchy.name == "cpuset":  # a new v1 cpuset starts empty: no task could join it
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (top / f).write_text((hierarchy / f).read_text())

    def _start_kubelet(self) -> None:
        self._make_cgroup_root()
        pki = self.cp.workdir / "pki"
        cert, key = issue_cert(pki, "kubelet-client", f"system:node:{self.node_name}", ("system:nodes",))
        kubeconfig = cert_kubeconfig(
            self.workdir / "kubelet.kubeconfig",
            self.cp.server,
            self.cp.ca_pem,
            f"system:node:{self.node_name}",
            cert,
            key,
        )
        serving_cert, serving_key = issue_cert(
            pki,
            "kubelet-serving",
            self.node_name,
            ("system:nodes",),
            client=False,
            server_ips=(self.slot.node_ip,),
            server_dns=(self.node_name,),
        )
        self.kubelet_port = free_port()
        self.kubelet_healthz_port = free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.slot.node_ip,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.kubelet_healthz_port,
            "tlsCertFile": str(serving_cert),
            "tlsPrivateKeyFile": str(serving_key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "imageServiceEndpoint": f"unix://{self.containerd_socket}",
            # This machine (and CI's) has cgroup v1 only, which kubelet >= 1.35 refuses unless told.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.slot.cgroup_root,
            "cgroupsPerQOS": True,
            "failSwapOn": False,
            "podLogsDir": str(self.workdir / "pod-logs"),
            "resolvConf": "",  # pods get no name servers of this machine: no DNS traffic leaves
            "clusterDomain": "cluster.local",
            "registerNode": True,
            "maxPods": 30,
            # How fast a changed Secret reaches its volume: watched, applied at the next pod sync.
            "syncFrequency": "5s",
            "configMapAndSecretChangeDetectionStrategy": "Watch",
            "fileCheckFrequency": "5s",
            "nodeStatusUpdateFrequency": "5s",
            "nodeStatusReportFrequency": "1m",
            # Test machine: never evict, never collect the locally imported images (they cannot be pulled back).
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "0%",
                "imagefs.available": "0%",
                "nodefs.inodesFree": "0%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "protectKernelDefaults": False,
            "shutdownGracePeriod": "0s",
            # Pods may mount ClusterTrustBundles and pod certificates (a projected volume's clusterTrustBundle and
            # podCertificate sources); the API server is started with the same gates (with_node_apis).
            "featureGates": NODE_FEATURE_GATES,
        }
        conf = _write(self.workdir / "kubelet-config.json", json.dumps(config, indent=2), 0o644)
        self._spawn(
            "kubelet",
            [
                str(self.cp.bin_dir / "kubelet"),
                f"--config={conf}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--cert-dir={self.workdir / 'kubelet/pki'}",
                f"--hostname-override={self.node_name}",
                f"--node-ip={self.slot.node_ip}",
                "--v=2",
            ],
        )

    def _start_proxy(self) -> None:
        """kube-proxy in iptables mode: ClusterIP Services (and ``kubernetes``) work from pods."""
        pki = self.cp.workdir / "pki"
        cert, key = issue_cert(pki, "kube-proxy", "system:kube-proxy")
        kubeconfig = cert_kubeconfig(
            self.workdir / "kube-proxy.kubeconfig", self.cp.server, self.cp.ca_pem, "system:kube-proxy", cert, key
        )
        healthz = free_port()
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": self.node_name,
            "bindAddress": self.slot.node_ip,
            "healthzBindAddress": f"127.0.0.1:{healthz}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "mode": "iptables",
            "clusterCIDR": str(self.slot.subnet),
            "detectLocalMode": "ClusterCIDR",
            # NodePorts only on the node's bridge address, never on eth0 or 127.0.0.1 (which would need
            # route_localnet=1, a machine-wide change).
            "nodePortAddresses": [f"{self.slot.node_ip}/32"],
            "iptables": {"localhostNodePorts": False, "masqueradeAll": False, "syncPeriod": "10s"},
            # Leave the machine's conntrack sysctls alone (0: do not set).
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        }
        conf = _write(self.workdir / "kube-proxy-config.json", json.dumps(config, indent=2), 0o644)
        self._spawn("kube-proxy", [str(self.cp.bin_dir / "kube-proxy"), f"--config={conf}", "--v=1"])

        def ready() -> bool:
            # /healthz answers 200 once the first full iptables sync is done.
            with urllib.request.urlopen(f"http://127.0.0.1:{healthz}/healthz", timeout=5) as r:
                return bool(r.status == 200)

        self.proxy_healthz_port = healthz
        self._wait("kube-proxy", ready, 60.0)

    def _start_scheduler(self) -> None:
        pki = self.cp.workdir / "pki"
        cert, key = issue_cert(pki, "kube-scheduler", "system:kube-scheduler")
        kubeconfig = cert_kubeconfig(
            self.workdir / "kube-scheduler.kubeconfig",
            self.cp.server,
            self.cp.ca_pem,
            "system:kube-scheduler",
            cert,
            key,
        )
        port = free_port()
        self._spawn(
            "kube-scheduler",
            [
                str(self.cp.bin_dir / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'scheduler-pki'}",
                "--v=1",
            ],
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its self-signed serving cert; /healthz is the readiness signal

        def ready() -> bool:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=5, context=insecure) as r:
                return bool(r.read() == b"ok")

        self._wait("kube-scheduler", ready, 60.0)

    def _node_ready(self) -> bool:
        body = _http_get(f"{self.cp.server}/api/v1/nodes/{self.node_name}", self.cp.ca_pem, self.cp.tokens["admin"])
        node = json.loads(body)
        for cond in node.get("status", {}).get("conditions", []):
            if cond.get("type") == "Ready":
                return bool(cond.get("status") == "True")
        return False

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.log_path(name).open("ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = proc
        with (self.workdir / "node-pids").open("a") as f:
            f.write(f"{name} {proc.pid}\n")

    def _wait(self, name: str, ready: Callable[[], bool], timeout: float) -> None:
        wait_ready(
            name,
            ready,
            processes=self.processes,
            log_path=self.log_path,
            timeout=timeout,
            error=LocalNodeError,
            interval=0.2,
        )

    # -- stop ----------------------------------------------------------------------------------------

    def import_image(self, archive: Path) -> list[str]:
        """Import an image archive (OCI layout or ``docker save`` output) for pods; returns the image names."""
        before = set(self.ctr("images", "ls", "-q").stdout.split())
        self.ctr("images", "import", str(archive))
        return sorted(set(self.ctr("images", "ls", "-q").stdout.split()) - before)

    def stop(self) -> None:
        stop_node(self.workdir, then=self.cp.stop)
        self.processes.clear()


def _stop_pids(pids_file: Path, names: tuple[str, ...] | None = None, timeout: float = 20.0) -> None:
    """SIGTERM the recorded processes (all, or those named) together, wait, SIGKILL what is left."""
    if not pids_file.exists():
        return
    entries = [line.split() for line in pids_file.read_text().splitlines() if line.strip()]
    targets = {int(pid): name for name, pid in entries if (names is None or name in names) and _alive(int(pid))}
    for pid in targets:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in targets) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid, name in targets.items():
        if _alive(pid):
            print(f"{name} (pid {pid}) ignored SIGTERM; killing", file=sys.stderr)
            os.kill(pid, signal.SIGKILL)


def _mounts_under(prefixes: list[Path]) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == str(p) or point.startswith(f"{p}/") for p in prefixes):
            points.append(point)
    return points


def remove_kube_chains() -> None:
    """Delete every iptables rule jumping to a ``KUBE-*`` chain, then those chains (filter, nat, mangle)."""
    for table in ("filter", "nat", "mangle"):
        rules = _run("iptables", "-w", "-t", table, "-S", check=False).stdout.splitlines()
        chains = [r.split()[1] for r in rules if r.startswith("-N KUBE-")]
        for rule in rules:
            words = rule.split()
            jumps_to_kube = "-j" in words and words[words.index("-j") + 1].startswith("KUBE-")
            if words[:1] == ["-A"] and not words[1].startswith("KUBE-") and jumps_to_kube:
                # shlex: the rule's comment is quoted in iptables -S output
                _run("iptables", "-w", "-t", table, "-D", *shlex.split(rule)[1:], check=False)
        for chain in chains:
            _run("iptables", "-w", "-t", table, "-F", chain, check=False)
        for chain in chains:
            _run("iptables", "-w", "-t", table, "-X", chain, check=False)


def stop_node(workdir: Path, then: Callable[[], None] | None = None) -> None:
    """Stop the node recorded in ``workdir``: kubelet, scheduler and proxy, then every pod's containers
    through containerd, then containerd; call ``then`` (to stop the control plane while the bridge
    address it serves on still exists: without it the API server hangs in shutdown); then unmount
    what they left, remove the cgroups, the bridge and the iptables chain. Safe to call twice."""
    state_file = workdir / "node-state.json"
    if not state_file.exists():
        return
    state = json.loads(state_file.read_text())
    slot = Slot(state["slot"])
    pids_file = workdir / "node-pids"
    _stop_pids(pids_file, ("kube-proxy", "kube-scheduler", "kubelet"))
    if (workdir / "kube-proxy-config.json").exists():
        # kube-proxy and the kubelet leave their KUBE-* chains behind when they stop. A node refuses to
        # start while KUBE-SERVICES exists, so the KUBE-* chains on this machine are this node's.
        bin_dir = state.get("bin_dir") or json.loads((workdir.parent / "state.json").read_text())["bin_dir"]
        subprocess.run([str(Path(bin_dir) / "kube-proxy"), "--cleanup", "--v=0"], capture_output=True, check=False)
        remove_kube_chains()
    sock = slot.run_dir / "containerd.sock"
    if sock.exists():
        ctr = ["ctr", "--address", str(sock), "--namespace", "k8s.io"]
        tasks = subprocess.run([*ctr, "tasks", "ls", "-q"], capture_output=True, text=True, check=False).stdout.split()
        for task in tasks:
            subprocess.run([*ctr, "tasks", "kill", "--signal", "SIGKILL", task], capture_output=True, check=False)
        for task in tasks:
            # "delete" waits for the task to exit, then ends its shim.
            subprocess.run([*ctr, "tasks", "delete", "--force", task], capture_output=True, check=False, timeout=60)
        containers = subprocess.run(
            [*ctr, "containers", "ls", "-q"], capture_output=True, text=True, check=False
        ).stdout.split()
        if containers:
            subprocess.run([*ctr, "containers", "delete", *containers], capture_output=True, check=False)
    _stop_pids(pids_file)
    pids_file.unlink(missing_ok=True)
    if then is not None:
        then()
    # Secret/projected volumes (tmpfs), pod network namespaces, container root filesystems.
    for point in reversed(_mounts_under([workdir.resolve(), slot.run_dir])):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / slot.cgroup_root.lstrip("/")
        if top.is_dir():
            below = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            for d in [*below, top]:
                try:
                    d.rmdir()  # fails while a process is still in it: left for the log, not hidden
                except OSError as e:
                    print(f"cgroup {d} not removed: {e}", file=sys.stderr)
    teardown_network(slot)
    shutil.rmtree(slot.run_dir, ignore_errors=True)
    state_file.unlink()


# -- putting it together -------------------------------------------------------------------------------


def start_cluster(workdir: Path) -> tuple[ControlPlane, LocalNode]:
    """Control plane + node in ``workdir`` (a fresh one each time); stop with ``stop_cluster``."""
    reasons = missing_prerequisites()
    if reasons:
        raise LocalNodeError("a local node cannot run here: " + "; ".join(reasons))
    workdir = workdir.resolve()
    if workdir.exists() and any(workdir.iterdir()) and not (workdir / "node").exists():
        raise LocalNodeError(f"{workdir} is not empty and holds no earlier local cluster: refusing to clear it")
    stop_cluster(workdir)
    # All of it: cluster.py keeps kubeconfigs it finds, and an old one names an old port.
    subprocess.run(["rm", "-rf", str(workdir)], check=True)
    workdir.mkdir(parents=True, exist_ok=True)
    bin_dir = build_binaries()
    for b in ("kubelet", "kube-scheduler"):
        if not (bin_dir / b).exists():
            raise LocalNodeError(f"{bin_dir / b} missing: tests/controlplane/build.sh did not build it")
    image_dir = build_images()
    slot = pick_slot(workdir)
    cp = NodeControlPlane(workdir=workdir, bin_dir=bin_dir, pod_ip=slot.node_ip)
    node = LocalNode(cp=cp, workdir=workdir / "node", slot=slot, image_dir=image_dir)
    (node.workdir / "logs").mkdir(parents=True, exist_ok=True)
    node._save_state()  # first, so that stop_node finds what to undo whatever fails next
    setup_network(slot)  # before the API server, which advertises the node's bridge address
    try:
        cp.start()
        node.start()
    except BaseException:
        stop_cluster(workdir)
        raise
    return cp, node


def load_cluster(workdir: Path) -> tuple[ControlPlane, LocalNode]:
    """Describe a cluster that ``up`` started in ``workdir`` (to use it, or stop it)."""
    workdir = workdir.resolve()
    cp = load(workdir)
    state = json.loads((workdir / "node" / "node-state.json").read_text())
    node = LocalNode(
        cp=cp,
        workdir=workdir / "node",
        slot=Slot(state["slot"]),
        image_dir=Path(state["image_dir"]),
        node_name=state["node_name"],
    )
    return cp, node


def stop_cluster(workdir: Path) -> None:
    """Stop node and control plane started by ``start_cluster`` in ``workdir``, by their recorded PIDs."""
    workdir = workdir.resolve()
    stop_node(workdir / "node", then=lambda: stop_recorded(workdir))
    stop_recorded(workdir)  # when there was no node state (it stopped already, or never started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "check", "images"])
    parser.add_argument("--dir", type=Path, default=Path(".local/node"))
    args = parser.parse_args(argv)
    if args.command == "check":
        reasons = missing_prerequisites()
        print("\n".join(reasons) or "ok")
        return 1 if reasons else 0
    if args.command == "images":
        print(build_images())
        return 0
    if args.command == "down":
        stop_cluster(args.dir)
        return 0
    cp, _node = start_cluster(args.dir)
    print(cp.admin_kubeconfig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
