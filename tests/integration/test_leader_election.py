"""High availability: with two replicas exactly one reconciles; when it dies the other takes over."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, certificate, cluster_issuer, unique
from tests.integration.conftest import OPERATOR_NAMESPACE
from tests.integration.kubeutil import wait_for

pytestmark = pytest.mark.integration

FAST_LEASE = {
    "CERTMINT_LEASE_DURATION_SECONDS": "4",
    "CERTMINT_LEASE_RENEW_SECONDS": "1",
    "CERTMINT_LEASE_RETRY_SECONDS": "0.5",
}


def _metric(op: OperatorProcess, name: str) -> float:
    status, body = op.get("/metrics")
    if status != 200:
        return -1.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


def _requests(op: OperatorProcess) -> dict[tuple[str, str], float]:
    """certmint_api_requests_total by (verb, resource)."""
    _, body = op.get("/metrics")
    found: dict[tuple[str, str], float] = {}
    for line in body.splitlines():
        if line.startswith("certmint_api_requests_total{"):
            labels = dict(part.split("=") for part in line[line.index("{") + 1 : line.index("}")].split(","))
            found[(labels["verb"].strip('"'), labels["resource"].strip('"'))] = float(line.rsplit(" ", 1)[1])
    return found


@pytest.fixture
def replicas(control_plane: ControlPlane, operator: OperatorProcess) -> Iterator[list[OperatorProcess]]:
    operator.stop()  # graceful: hands the Lease over at once
    pair = [
        OperatorProcess(
            kubeconfig=control_plane.admin_kubeconfig,
            log_dir=control_plane.workdir / "logs",
            namespace=OPERATOR_NAMESPACE,
            extra_env={**FAST_LEASE, "POD_NAME": f"replica-{i}"},
        )
        for i in range(2)
    ]
    for p in pair:
        p.log_dir.mkdir(exist_ok=True)
    for i, p in enumerate(pair):
        p.runs = 100 + i  # distinct log file names
        p.start()
    try:
        yield pair
    finally:
        for p in pair:
            p.stop()
        operator.start()


def test_one_leader_issues_and_a_standby_takes_over(api: client.ApiClient, replicas: list[OperatorProcess]) -> None:
    cm = Certmint(api)
    ns = cm.namespace(unique("ha"))
    leader = wait_for(
        lambda: next((p for p in replicas if _metric(p, "certmint_leader") == 1), None), "one replica to hold the Lease"
    )
    standby = next(p for p in replicas if p is not leader)
    assert _metric(standby, "certmint_leader") == 0

    issuer = unique("ha-ss")
    cm.create(cluster_issuer(issuer))
    cm.create(certificate("before", ns, issuer_name=issuer))
    cm.wait_ready("Certificate", "before", ns)
    # Other tests' short-lived certificates renew meanwhile, so count ">= 1" for the leader; the standby wrote nothing.
    assert _metric(leader, "certmint_issuances_total") >= 1
    assert _metric(standby, "certmint_issuances_total") == 0
    assert sum(v for k, v in _requests(standby).items() if k[0] not in ("get", "list", "watch")) == 0

    killed_at = time.monotonic()
    leader.kill()  # a crash: the Lease is not released and must expire
    wait_for(lambda: _metric(standby, "certmint_leader") == 1, "the standby to take the Lease", timeout=30)
    failover = time.monotonic() - killed_at
    print(f"\nfailover: standby became leader {failover:.2f}s after the leader was killed (lease 4s, retry 0.5s)")
    cm.create(certificate("after", ns, issuer_name=issuer))
    cm.wait_ready("Certificate", "after", ns)
    print(f"failover: first issuance by the new leader done {time.monotonic() - killed_at:.2f}s after the kill")

    # Nothing was issued twice: one revision and one CertificateRequest per certificate.
    for name in ("before", "after"):
        assert cm.get("Certificate", name, ns)["status"]["revision"] == 1
        requests = cm.custom.list_namespaced_custom_object(
            "certmint.dev",
            "v1alpha1",
            ns,
            "certificaterequests",
            label_selector=f"certmint.dev/certificate-name={name}",
        )
        assert len(requests["items"]) == 1
    assert _metric(standby, "certmint_issuances_total") >= 1
