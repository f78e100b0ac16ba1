"""High availability: with two replicas exactly one reconciles; when it dies the other takes over.

A replica that loses its Lease steps down (stops writing) and campaigns again, in the same process.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, certificate, cluster_issuer, unique
from tests.integration.conftest import OPERATOR_NAMESPACE
from tests.integration.kubeutil import wait_for
from tests.integration.replicas import FAST_LEASE, stand_ins

pytestmark = pytest.mark.integration

READS = ("get", "list", "watch")


def _writes(op: OperatorProcess, *, leases: bool = True) -> float:
    """Requests that changed something (``leases=False``: except those of the operator's own Lease)."""
    return sum(
        v
        for labels, v in op.metrics().select("certmint_api_requests_total")
        if labels["verb"] not in READS and (leases or labels["resource"] != "leases")
    )


@pytest.fixture
def replicas(control_plane: ControlPlane, operator: OperatorProcess) -> Iterator[list[OperatorProcess]]:
    envs = [{**FAST_LEASE, "POD_NAME": f"replica-{i}"} for i in range(2)]
    with stand_ins(control_plane, operator, envs, first_run=100) as pair:
        yield pair


def test_one_leader_issues_and_a_standby_takes_over(api: client.ApiClient, replicas: list[OperatorProcess]) -> None:
    cm = Certmint(api)
    ns = cm.namespace(unique("ha"))
    leader = wait_for(
        lambda: next((p for p in replicas if p.metrics().value("certmint_leader") == 1), None),
        "one replica to hold the Lease",
    )
    standby = next(p for p in replicas if p is not leader)
    assert standby.metrics().value("certmint_leader") == 0

    issuer = unique("ha-ss")
    cm.create(cluster_issuer(issuer))
    cm.create(certificate("before", ns, issuer_name=issuer))
    cm.wait_ready("Certificate", "before", ns)
    # Other tests' short-lived certificates renew meanwhile, so count ">= 1" for the leader; the standby wrote nothing.
    assert leader.metrics().value("certmint_issuances_total") >= 1
    assert standby.metrics().value("certmint_issuances_total") == 0
    assert _writes(standby) == 0

    killed_at = time.monotonic()
    leader.kill()  # a crash: the Lease is not released and must expire
    wait_for(lambda: standby.metrics().value("certmint_leader") == 1, "the standby to take the Lease", timeout=30)
    failover = time.monotonic() - killed_at
    print(f"\nfailover: standby became leader {failover:.2f}s after the leader was killed (lease 4s, retry 0.5s)")
    cm.create(certificate("after", ns, issuer_name=issuer))
    cm.wait_ready("Certificate", "after", ns)
    print(f"failover: first issuance by the new leader done {time.monotonic() - killed_at:.2f}s after the kill")

    # Nothing was issued twice: one revision and one CertificateRequest per certificate.
    for name in ("before", "after"):
        assert cm.get("Certificate", name, ns)["status"]["revision"] == 1
        assert len(cm.requests_of(name, ns)) == 1
    assert standby.metrics().value("certmint_issuances_total") >= 1


LEASE_NAME = "certmint-operator"


@pytest.fixture
def keeper(control_plane: ControlPlane, operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """One replica with a fast Lease, its own log."""
    with stand_ins(control_plane, operator, [{**FAST_LEASE, "POD_NAME": "keeper"}], first_run=300) as (op,):
        yield op


def _set_holder(api: client.ApiClient, holder: str | None) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    client.CoordinationV1Api(api).patch_namespaced_lease(
        LEASE_NAME,
        OPERATOR_NAMESPACE,
        {"spec": {"holderIdentity": holder, "renewTime": now, "acquireTime": now, "leaseDurationSeconds": 3600}},
    )


def test_a_leader_that_loses_its_lease_steps_down_and_leads_again_in_the_same_process(
    api: client.ApiClient, keeper: OperatorProcess
) -> None:
    cm = Certmint(api)
    ns, issuer = cm.namespace_and_issuer("relead")
    wait_for(lambda: keeper.metrics().value("certmint_leader") == 1, "the replica to hold the Lease")
    cm.create(certificate("before", ns, issuer_name=issuer))
    cm.wait_ready("Certificate", "before", ns)
    assert keeper.proc is not None
    pid = keeper.proc.pid

    # Another holder takes the Lease (as a replica would after this one missed its renewals).
    _set_holder(api, "usurper")
    proc = keeper.proc
    stepped_down = lambda: proc.poll() is not None or keeper.metrics().value("certmint_leader") == 0  # noqa: E731
    wait_for(stepped_down, "the replica to step down (or exit)", timeout=15)
    assert proc.poll() is None, f"the operator exited after losing its Lease; log: {keeper.log_path}"
    writes = _writes(keeper, leases=False)
    cm.create(certificate("during", ns, issuer_name=issuer))
    # Its watch still sees the new Certificate and queues it, but nobody reconciles while another holds the Lease.
    wait_for(
        lambda: keeper.metrics().value("certmint_workqueue_depth") >= 1, "the new Certificate to wait in the queue"
    )
    assert "status" not in cm.get("Certificate", "during", ns)
    assert _writes(keeper, leases=False) == writes, "the replica wrote while another held the Lease"

    # The other holder goes away; the replica campaigns, wins and issues what waited.
    _set_holder(api, None)
    wait_for(lambda: keeper.metrics().value("certmint_leader") == 1, "the replica to lead again", timeout=15)
    cm.wait_ready("Certificate", "during", ns)
    cm.create(certificate("after", ns, issuer_name=issuer))
    cm.wait_ready("Certificate", "after", ns)
    assert keeper.proc.poll() is None and keeper.proc.pid == pid, "the same process leads again"
    log = keeper.log_path.read_text(errors="replace")
    assert log.count("became the leader") == 2
    assert "Traceback" not in log
