"""Which API server, as whom, and which namespace: a small kubeconfig reader for the CLI.

Why our own: the ``kubernetes`` client is a test-only dependency, and kopf's ``login_with_kubeconfig`` reads the
current context only (no ``--context``), resolves no relative paths and wants an operator's settings object.

What it follows from kubectl, deliberately:

- Files: ``--kubeconfig`` alone if given, else every file of ``KUBECONFIG`` (merged, the first file that sets a
  value wins, missing files skipped), else ``~/.kube/config``; with none of them, the in-cluster ServiceAccount
  (``KUBERNETES_SERVICE_HOST``), as a pod running the CLI would expect.
- Context: ``--context``, else ``current-context``. Namespace: ``-n``, else the context's, else ``default``.
- Relative file paths in a kubeconfig are relative to that file's directory.
- Credentials: client certificate and key (``-data`` or file), bearer ``token`` or ``tokenFile``, an ``exec``
  credential plugin (run once, as kubectl does for each command), CA (``-data`` or file), and
  ``insecure-skip-tls-verify``. Not supported, each refused by name: basic auth, ``auth-provider`` (removed from
  kubectl), ``proxy-url`` and ``tls-server-name``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import ssl
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from certmint.cli.errors import CliError, Exit
from certmint.kube.client import Credentials
from certmint.pki.keys import PKIError, load_private_key, public_key_matches

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXEC_TIMEOUT_SECONDS = 60.0


class KubeconfigError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, Exit.API)


@dataclass(frozen=True)
class Connection:
    """Where the CLI talks to and the namespace it works in when ``-n`` is not given."""

    credentials: Credentials
    namespace: str
    context: str  # the context's name, or "in-cluster"


#: A named kubeconfig entry's body and the file it came from (its relative paths are relative to that file).
_Entries = dict[str, tuple[dict[str, Any], Path]]


@dataclass
class _Merged:
    current_context: str | None = None
    contexts: _Entries = field(default_factory=dict)
    clusters: _Entries = field(default_factory=dict)
    users: _Entries = field(default_factory=dict)


def kubeconfig_paths(explicit: str | None, environ: Mapping[str, str]) -> list[Path]:
    """The files to read, in precedence order (``explicit`` must exist; KUBECONFIG's may not)."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise KubeconfigError(f"kubeconfig {explicit} does not exist")
        return [path]
    if environ.get("KUBECONFIG"):
        paths = [Path(p).expanduser() for p in environ["KUBECONFIG"].split(os.pathsep) if p.strip()]
        return [p for p in paths if p.is_file()]
    home = Path(environ.get("HOME", "~")).expanduser() / ".kube" / "config"
    return [home] if home.is_file() else []


def load_connection(
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    namespace: str | None = None,
    environ: Mapping[str, str] | None = None,
    in_cluster_dir: Path = IN_CLUSTER_DIR,
) -> Connection:
    """Read the kubeconfig(s) and return the connection to use; KubeconfigError (exit 3) with the reason otherwise."""
    env = os.environ if environ is None else environ
    paths = kubeconfig_paths(kubeconfig, env)
    if not paths:
        if env.get("KUBERNETES_SERVICE_HOST") and (in_cluster_dir / "token").is_file():
            return _in_cluster(env, in_cluster_dir, namespace)
        where = "KUBECONFIG names no existing file" if env.get("KUBECONFIG") else "no ~/.kube/config"
        raise KubeconfigError(f"no kubeconfig found ({where}); pass --kubeconfig or set KUBECONFIG")
    merged = _merge(paths)
    name = context or merged.current_context
    if not name:
        raise KubeconfigError(f"no current-context in {_names(paths)}; pass --context")
    if name not in merged.contexts:
        known = ", ".join(sorted(merged.contexts)) or "none"
        raise KubeconfigError(f"context {name!r} not found in {_names(paths)} (contexts: {known})")
    ctx, _ = merged.contexts[name]
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if not cluster_name or cluster_name not in merged.clusters:
        raise KubeconfigError(f"context {name!r} names cluster {cluster_name!r}, which is not in {_names(paths)}")
    cluster, cluster_file = merged.clusters[cluster_name]
    user, user_file = merged.users.get(user_name or "", ({}, cluster_file))
    if user_name and user_name not in merged.users:
        raise KubeconfigError(f"context {name!r} names user {user_name!r}, which is not in {_names(paths)}")
    credentials = _credentials(cluster, cluster_file.parent, user, user_file.parent, env, where=f"context {name!r}")
    return Connection(credentials=credentials, namespace=namespace or ctx.get("namespace") or "default", context=name)


def _names(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths)


def _merge(paths: Sequence[Path]) -> _Merged:
    merged = _Merged()
    for path in paths:
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            detail = " ".join(str(e).split()) or type(e).__name__  # a YAML error's lines, with where it is
            raise KubeconfigError(f"kubeconfig {path} cannot be read: {detail}") from None
        if not isinstance(config, dict):
            raise KubeconfigError(f"kubeconfig {path} is not a kubeconfig (a YAML mapping was expected)")
        if merged.current_context is None and config.get("current-context"):
            merged.current_context = str(config["current-context"])
        for section, store in (("contexts", merged.contexts), ("clusters", merged.clusters), ("users", merged.users)):
            entries = config.get(section) or []
            if not isinstance(entries, list):
                raise KubeconfigError(f"kubeconfig {path}: {section} must be a list")
            singular = section[:-1]
            for entry in entries:
                if not isinstance(entry, dict) or "name" not in entry:
                    raise KubeconfigError(f"kubeconfig {path}: an entry of {section} has no name")
                body = entry.get(singular) or {}
                if not isinstance(body, dict):
                    raise KubeconfigError(f"kubeconfig {path}: {section} entry {entry['name']!r} is not a mapping")
                store.setdefault(str(entry["name"]), (body, path))
    return merged


def _credentials(
    cluster: Mapping[str, Any],
    cluster_dir: Path,
    user: Mapping[str, Any],
    user_dir: Path,
    env: Mapping[str, str],
    *,
    where: str,
) -> Credentials:
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise KubeconfigError(f"{where}: its cluster has no server")
    if not server.startswith(("https://", "http://")):
        raise KubeconfigError(f"{where}: server {server!r} is not an http(s) URL")
    for unsupported in ("proxy-url", "tls-server-name"):
        if cluster.get(unsupported):
            raise KubeconfigError(f"{where}: the cluster's {unsupported} is not supported by certmint's CLI")
    for unsupported in ("username", "password", "auth-provider"):
        if user.get(unsupported):
            raise KubeconfigError(
                f"{where}: user {unsupported} is not supported by certmint's CLI (use a token, a client certificate "
                "or an exec plugin)"
            )
    token: str | None = user.get("token")
    if not token and user.get("tokenFile"):
        token = _read(user_dir, user["tokenFile"], where, "tokenFile").decode().strip()
    certificate = _data_or_file(user, "client-certificate", user_dir, where)
    key = _data_or_file(user, "client-key", user_dir, where)
    if user.get("exec"):
        exec_token, exec_cert, exec_key = _run_exec(user["exec"], server, env, where)
        token = exec_token or token
        certificate, key = exec_cert or certificate, exec_key or key
    if bool(certificate) != bool(key):
        raise KubeconfigError(f"{where}: a client certificate needs a client key, and a key a certificate")
    creds = Credentials(
        server=server,
        ca_data=_data_or_file(cluster, "certificate-authority", cluster_dir, where),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token=token or None,
        certificate_data=certificate,
        private_key_data=key,
    )
    _check_tls_material(creds, where)
    return creds


def _read(base: Path, name: str, where: str, key: str) -> bytes:
    path = Path(name).expanduser()
    path = path if path.is_absolute() else base / path
    try:
        return path.read_bytes()
    except OSError as e:
        raise KubeconfigError(f"{where}: {key} {path} cannot be read: {e.strerror or e}") from None


def _data_or_file(section: Mapping[str, Any], key: str, base: Path, where: str) -> bytes | None:
    """``<key>-data`` (base64 of PEM) or the file ``<key>``; PEM either way."""
    data = section.get(f"{key}-data")
    if data:
        try:
            return base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError):
            raise KubeconfigError(f"{where}: {key}-data is not base64") from None
    if section.get(key):
        return _read(base, str(section[key]), where, key)
    return None


def _check_tls_material(creds: Credentials, where: str) -> None:
    """Fail here, with the kubeconfig named, rather than at the first request with an ssl error."""
    try:
        ssl.create_default_context(cadata=creds.ca_data.decode() if creds.ca_data else None)
    except (ssl.SSLError, ValueError, UnicodeDecodeError):
        raise KubeconfigError(f"{where}: the certificate authority is not a PEM certificate") from None
    if creds.certificate_data and creds.private_key_data:
        try:
            certificate = x509.load_pem_x509_certificate(creds.certificate_data)
            key = load_private_key(creds.private_key_data)
        except (ValueError, PKIError):
            raise KubeconfigError(f"{where}: the client certificate or key is not readable PEM") from None
        if not public_key_matches(key, certificate):
            raise KubeconfigError(f"{where}: the client key does not match the client certificate")


def _run_exec(
    spec: Mapping[str, Any], server: str, env: Mapping[str, str], where: str
) -> tuple[str | None, bytes | None, bytes | None]:
    """An exec credential plugin (client.authentication.k8s.io): its ExecCredential's token or client pair."""
    command = spec.get("command")
    if not command:
        raise KubeconfigError(f"{where}: exec has no command")
    api_version = spec.get("apiVersion") or "client.authentication.k8s.io/v1"
    info: dict[str, Any] = {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    if spec.get("provideClusterInfo"):
        info["spec"]["cluster"] = {"server": server}
    child_env = {
        **env,
        **{e["name"]: e["value"] for e in spec.get("env") or []},
        "KUBERNETES_EXEC_INFO": json.dumps(info),
    }
    try:
        proc = subprocess.run(  # the kubeconfig's owner chose this command, as with kubectl
            [str(command), *[str(a) for a in spec.get("args") or []]],
            env=child_env,
            capture_output=True,
            timeout=EXEC_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise KubeconfigError(f"{where}: exec plugin {command} failed to run: {e}") from None
    if proc.returncode != 0:
        last = (proc.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
        raise KubeconfigError(f"{where}: exec plugin {command} exited with {proc.returncode}: {last}")
    try:
        status = json.loads(proc.stdout)["status"]
    except (ValueError, KeyError, TypeError):
        raise KubeconfigError(f"{where}: exec plugin {command} did not print an ExecCredential") from None
    cert, key, token = status.get("clientCertificateData"), status.get("clientKeyData"), status.get("token")
    return (str(token) if token else None, str(cert).encode() if cert else None, str(key).encode() if key else None)


def _in_cluster(env: Mapping[str, str], directory: Path, namespace: str | None) -> Connection:
    host, port = env["KUBERNETES_SERVICE_HOST"], env.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    ns_file = directory / "namespace"
    own_ns = ns_file.read_text(encoding="utf-8").strip() if ns_file.is_file() else "default"
    ca = directory / "ca.crt"
    creds = Credentials(
        server=f"https://{host}:{port}",
        ca_data=ca.read_bytes() if ca.is_file() else None,
        token_path=str(directory / "token"),
    )
    return Connection(credentials=creds, namespace=namespace or own_ns, context="in-cluster")
