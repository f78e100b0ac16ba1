"""A real, local Kubernetes control plane for tests, demos and benchmarks.

Starts etcd, kube-apiserver and kube-controller-manager (built by
``build.sh`` from the pinned upstream release) on free loopback ports, with
RBAC on, a generated serving CA, service-account signing keys and a static
token file. Waits on real readiness signals (etcd ``/health``, the API
server's ``/readyz``, the controller manager's default ServiceAccount) and
stops every process by its PID.

Command line (used by the Makefile)::

    python -m tests.controlplane.cluster up --dir .local/cluster   # starts, prints the kubeconfig path
    python -m tests.controlplane.cluster down --dir .local/cluster # stops by the PIDs recorded in the dir

Identities in the token file: ``admin`` (group ``system:masters``) and the
unprivileged users named in ``RESTRICTED_USERS``, for RBAC tests.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.x509util import certificate_builder, common_name

HERE = Path(__file__).resolve().parent
RESTRICTED_USERS = ("alice", "bob")
READY_TIMEOUT = 120.0


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message says which part and where its log is."""


def build_binaries() -> Path:
    """Build (or find cached) binaries; returns their directory."""
    proc = subprocess.run(["bash", str(HERE / "build.sh")], stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(f"building the control-plane binaries failed (exit {proc.returncode})")
    return Path(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return path


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _make_serving_pki(d: Path) -> None:
    """A throwaway CA plus a serving certificate for 127.0.0.1/localhost."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = common_name("certmint-test-apiserver-ca")
    not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=7)
    ca = (
        certificate_builder(ca_name, ca_key.public_key(), not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        certificate_builder(common_name("kube-apiserver"), key.public_key(), not_before, not_after, issuer=ca_name)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(d / "ca.crt", ca.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(d / "ca.key", _pem_key(ca_key))
    _write(d / "apiserver.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(d / "apiserver.key", _pem_key(key))
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(d / "sa.key", _pem_key(sa_key))
    _write(
        d / "sa.pub",
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        0o644,
    )


def kubeconfig_text(server: str, ca_pem: bytes, user: str, token: str) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "certmint-local",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "certmint-local", "user": user}}],
        "current-context": user,
    }
    return json.dumps(config, indent=2)  # JSON is valid YAML


@dataclass
class ControlPlane:
    """One running control plane, described by files in ``workdir``."""

    workdir: Path
    bin_dir: Path
    with_controller_manager: bool = True
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    server: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def ca_pem(self) -> bytes:
        return (self.workdir / "pki" / "ca.crt").read_bytes()

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def kubeconfig_for(self, user: str) -> Path:
        """A kubeconfig for one of the identities in the token file."""
        # Always rewritten: a workdir reused by another run must not point at that run's port.
        return _write(
            self.workdir / f"{user}.kubeconfig", kubeconfig_text(self.server, self.ca_pem, user, self.tokens[user])
        )

    def kubeconfig_for_token(self, name: str, token: str) -> Path:
        """A kubeconfig for any bearer token, e.g. a ServiceAccount token from the TokenRequest API."""
        return _write(self.workdir / f"{name}.kubeconfig", kubeconfig_text(self.server, self.ca_pem, name, token))

    def kubectl(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        error: Callable[[str], Exception] = AssertionError,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The kubectl built from the same release, as a user (admin unless ``kubeconfig``) runs it; with ``check``,
        a non-zero exit raises ``error``."""
        proc = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig or self.admin_kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise error(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    # -- start -------------------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        for sub in ("pki", "logs", "etcd-data"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        pki = self.workdir / "pki"
        _make_serving_pki(pki)
        self.tokens = {name: base64.b32encode(os.urandom(20)).decode().lower() for name in ("admin", *RESTRICTED_USERS)}
        self.tokens["controller-manager"] = base64.b32encode(os.urandom(20)).decode().lower()
        lines = [f'{self.tokens["admin"]},admin,admin,"system:masters"']
        lines.append(f"{self.tokens['controller-manager']},system:kube-controller-manager,kcm")
        lines += [f"{self.tokens[u]},{u},{u}" for u in RESTRICTED_USERS]
        _write(pki / "tokens.csv", "\n".join(lines) + "\n")

        etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync",  # throwaway data: durability costs time, buys nothing
                "--log-level=warn",
            ],
        )
        self._wait("etcd", lambda: b'"health":"true"' in _http_get(f"{etcd_url}/health"))
        etcd_ready = time.monotonic()

        self.server = f"https://127.0.0.1:{api_port}"
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                # A setting only: nothing here ever sends traffic to this range.
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                # ClusterTrustBundles and PodCertificateRequests (beta, off by default in 1.36): certmint publishes
                # Bundles and pod signers' anchors as the former and signs the latter.
                "--feature-gates=ClusterTrustBundle=true,PodCertificateRequest=true",
                "--runtime-config=certificates.k8s.io/v1beta1/clustertrustbundles=true,"
                "certificates.k8s.io/v1beta1/podcertificaterequests=true",
                "--v=1",
            ],
        )
        self._write_kubeconfigs()
        self._wait(
            "kube-apiserver",
            lambda: _http_get(f"{self.server}/readyz", self.ca_pem, self.tokens["admin"]) == b"ok",
        )
        api_ready = time.monotonic()

        if self.with_controller_manager:
            kcm_config = self.kubeconfig_for("controller-manager")
            self._spawn(
                "kube-controller-manager",
                [
                    str(self.bin_dir / "kube-controller-manager"),
                    f"--kubeconfig={kcm_config}",
                    "--secure-port=0",
                    "--leader-elect=false",
                    "--use-service-account-credentials=true",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    "--controllers=*",
                    "--v=1",
                ],
            )
            # The ServiceAccount controller creating "default" proves the controllers run.
            self._wait(
                "kube-controller-manager",
                lambda: (
                    b'"kind":"ServiceAccount"'
                    in _http_get(
                        f"{self.server}/api/v1/namespaces/default/serviceaccounts/default",
                        self.ca_pem,
                        self.tokens["admin"],
                    ).replace(b" ", b"")
                ),
            )
        done = time.monotonic()
        timings = {
            "etcd_ready_s": round(etcd_ready - started, 2),
            "apiserver_ready_s": round(api_ready - etcd_ready, 2),
            "controller_manager_ready_s": round(done - api_ready, 2),
            "total_s": round(done - started, 2),
        }
        _write(self.workdir / "timings.json", json.dumps(timings), 0o644)
        print(f"control plane up at {self.server}: {timings}", file=sys.stderr)

    def _write_kubeconfigs(self) -> None:
        _write(self.admin_kubeconfig, kubeconfig_text(self.server, self.ca_pem, "admin", self.tokens["admin"]))
        state = {"server": self.server, "tokens": self.tokens, "bin_dir": str(self.bin_dir)}
        _write(self.workdir / "state.json", json.dumps(state))

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.log_path(name).open("ab")
        # A new session: Ctrl-C in the user's terminal reaches only the Python parent, which stops us in order.
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = proc
        with (self.workdir / "pids").open("a") as f:
            f.write(f"{name} {proc.pid}\n")

    def _wait(self, name: str, ready: Callable[[], bool]) -> None:
        wait_ready(
            name,
            ready,
            processes={name: self.processes[name]},
            log_path=self.log_path,
            timeout=READY_TIMEOUT,
            error=ControlPlaneError,
        )

    # -- stop --------------------------------------------------------------------------------------

    def stop(self) -> None:
        stop_recorded(self.workdir)
        self.processes.clear()


def _http_get(url: str, ca_pem: bytes | None = None, token: str | None = None) -> bytes:
    ctx = ssl.create_default_context(cadata=ca_pem.decode()) if ca_pem else None
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as e:
        return bytes(e.read())


def wait_ready(
    name: str,
    ready: Callable[[], bool],
    *,
    processes: Mapping[str, subprocess.Popen[bytes]],
    log_path: Callable[[str], Path],
    timeout: float,
    error: type[Exception],
    interval: float = 0.1,
    transient: tuple[type[BaseException], ...] = (OSError, ValueError, urllib.error.URLError, ssl.SSLError),
) -> None:
    """Poll ``ready`` (a readiness probe) until it answers True; fail at once if one of ``processes`` exits.

    ``transient`` errors from the probe mean "not yet" (connection refused, TLS not up, a half-written
    file); the error raised names the process and ends with the tail of its log.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pname, proc in processes.items():
            if proc.poll() is not None:
                raise error(
                    f"{pname} exited with {proc.returncode} while waiting for {name}; log: {log_path(pname)}\n"
                    + _tail(log_path(pname))
                )
        try:
            if ready():
                return
        except transient:
            pass
        time.sleep(interval)  # polling interval of a readiness probe, not a stand-in for one
    raise error(f"{name} not ready after {timeout}s; log: {log_path(name)}\n" + _tail(log_path(name)))


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop_recorded(workdir: Path, timeout: float = 15.0) -> None:
    """Stop the processes whose PIDs ``start`` recorded, newest first: SIGTERM, then SIGKILL."""
    pids_file = workdir / "pids"
    if not pids_file.exists():
        return
    entries = [line.split() for line in pids_file.read_text().splitlines() if line.strip()]
    for name, pid_text in reversed(entries):
        pid = int(pid_text)
        if not _alive(pid):
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            print(f"{name} (pid {pid}) ignored SIGTERM; killing", file=sys.stderr)
            os.kill(pid, signal.SIGKILL)
    pids_file.unlink()


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our child; otherwise just probe.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def load(workdir: Path) -> ControlPlane:
    """Describe an already running control plane from its ``state.json``."""
    state = json.loads((workdir / "state.json").read_text())
    return ControlPlane(workdir=workdir, bin_dir=Path(state["bin_dir"]), server=state["server"], tokens=state["tokens"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "up", "down"])
    parser.add_argument("--dir", type=Path, default=Path(".local/cluster"))
    parser.add_argument("--no-controller-manager", action="store_true")
    args = parser.parse_args(argv)
    workdir: Path = args.dir.resolve()
    if args.command == "build":
        print(build_binaries())
        return 0
    if args.command == "down":
        stop_recorded(workdir)
        return 0
    stop_recorded(workdir)  # a previous run's leftovers
    if workdir.exists():
        for sub in ("etcd-data", "pki", "logs"):
            subprocess.run(["rm", "-rf", str(workdir / sub)], check=True)
    cp = ControlPlane(workdir=workdir, bin_dir=build_binaries(), with_controller_manager=not args.no_controller_manager)
    try:
        cp.start()
    except BaseException:
        cp.stop()
        raise
    print(cp.admin_kubeconfig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
