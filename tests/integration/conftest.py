"""Integration tier: a real kube-apiserver + etcd + kube-controller-manager, started once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.conftest import session_control_plane
from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, ca_chain, unique

REPO = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "certmint"


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    with session_control_plane(request, "test") as cp:
        yield cp


@pytest.fixture(scope="session")
def api(control_plane: ControlPlane) -> client.ApiClient:
    """An admin API client, as `kubectl` with the admin kubeconfig would be."""
    return config.new_client_from_config(config_file=str(control_plane.admin_kubeconfig))


def api_for(control_plane: ControlPlane, user: str) -> client.ApiClient:
    """An API client for a restricted identity from the token file."""
    return config.new_client_from_config(config_file=str(control_plane.kubeconfig_for(user)))


def kubectl(control_plane: ControlPlane, *args: str, check: bool = True, user: str = "admin") -> str:
    """Run the kubectl built from the same release, as a user would."""
    kubeconfig = None if user == "admin" else control_plane.kubeconfig_for(user)
    proc = control_plane.kubectl(*args, check=check, kubeconfig=kubeconfig)
    return proc.stdout + proc.stderr if not check else proc.stdout


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> None:
    """The CRDs from crds/, applied server-side like a GitOps tool would, and established."""
    kubectl(control_plane, "apply", "--server-side", "--field-manager=certmint-tests", "-f", str(REPO / "crds"))
    kubectl(control_plane, "wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds"))
    kubectl(control_plane, "create", "namespace", OPERATOR_NAMESPACE)


@pytest.fixture(scope="session")
def operator(control_plane: ControlPlane, crds: None) -> Iterator[OperatorProcess]:
    """One operator process for the session; tests that kill it restart it before they end."""
    proc = OperatorProcess(
        kubeconfig=control_plane.admin_kubeconfig,
        log_dir=control_plane.workdir / "logs",
        namespace=OPERATOR_NAMESPACE,
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def cm(api: client.ApiClient, operator: OperatorProcess) -> Certmint:
    """certmint objects through the admin client, with the session's operator running."""
    return Certmint(api)


@pytest.fixture(scope="module")
def ca_issuer(cm: Certmint) -> str:
    """A CA ClusterIssuer of the module's own, behind a selfSigned root in the operator's namespace."""
    return ca_chain(cm, unique("root"), OPERATOR_NAMESPACE)
