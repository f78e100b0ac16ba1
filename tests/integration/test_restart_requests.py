"""What a restarted operator, and a standby that takes over, ask the real API server per Certificate (issue 18).

With every Certificate Ready, its Secret in place and its issuer unchanged, a new leader has nothing to read or write
for any one of them: the lists its watches start with say everything. Allowed are requests whose number does not
depend on the Certificates: the lists and watches, the Lease, and each CA issuer's check of its CA Secret. The counts
are the operator's own ``certmint_api_requests_total`` (the requests of its API client; kopf's watches are not in
it), by verb and resource.

The operators here watch only the test's namespace (``CERTMINT_WATCH_NAMESPACES``), so Certificates left by other
tests of the session neither add requests nor renew in the middle of a count; ClusterIssuers are cluster-wide, so
the CA Secret reads allowed are one per CA ClusterIssuer that exists.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
from kubernetes import client

from tests.controlplane.cluster import ControlPlane
from tests.controlplane.metrics import MetricSnapshot
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import GROUP, VERSION, Certmint, certificate, unique
from tests.integration.kubeutil import wait_for
from tests.integration.replicas import FAST_LEASE, stand_ins

pytestmark = pytest.mark.integration

COUNT = 30
READS = ("get", "list", "watch")
IDLE_TIMEOUT = 90.0


def _env(identity: str, namespace: str) -> dict[str, str]:
    # No CA issuer re-check within a count: the only issuer check is the one every new leader makes.
    return {
        **FAST_LEASE,
        "POD_NAME": identity,
        "CERTMINT_WATCH_NAMESPACES": namespace,
        "CERTMINT_ISSUER_RECHECK_SECONDS": "3600",
    }


@pytest.fixture
def namespace(api: client.ApiClient) -> str:
    return Certmint(api).namespace(unique("restart"))


def _issue_all(cm: Certmint, namespace: str, issuer: str) -> dict[str, str]:
    """COUNT ECDSA Certificates of the CA issuer, all Ready: their serial numbers."""
    names = [f"svc-{i:02d}" for i in range(COUNT)]
    for name in names:
        cm.create(certificate(name, namespace, issuer_name=issuer, duration="2h", privateKey={"algorithm": "ECDSA"}))
    for name in names:
        cm.wait_ready("Certificate", name, namespace, timeout=IDLE_TIMEOUT)
    return _serials(cm, namespace, names)


def _serials(cm: Certmint, namespace: str, names: list[str]) -> dict[str, str]:
    return {name: str(cm.get("Certificate", name, namespace)["status"]["serialNumber"]) for name in names}


def _idle(op: OperatorProcess, timers: float) -> MetricSnapshot | None:
    m = op.metrics()
    if (
        m.value("certmint_leader") == 1
        and m.value("certmint_workqueue_depth") == 0
        and m.value("certmint_scheduled_timers") >= timers
    ):
        return m
    return None


def _wait_idle(op: OperatorProcess, timers: float, what: str) -> MetricSnapshot:
    """Leading, nothing queued, at least ``timers`` timers: on two scrapes in a row (not a gap between batches)."""
    idle = wait_for(lambda: _idle(op, timers) and _idle(op, timers), what, timeout=IDLE_TIMEOUT)
    assert idle is not None
    return idle


def _ca_cluster_issuers(api: client.ApiClient) -> int:
    listed = cast(
        dict[str, Any], client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, "clusterissuers")
    )
    return sum(1 for item in listed["items"] if "ca" in (item.get("spec") or {}))


def _check_requests(what: str, counts: MetricSnapshot, allowed_secret_reads: int, seconds: float) -> None:
    """No write but the Lease's, and no more Secret reads than the CA issuers' checks; the figures printed."""
    by_kind = {
        f"{labels['verb']} {labels['resource']}": int(v)
        for labels, v in counts.select("certmint_api_requests_total")
        if v
    }
    secret_reads = by_kind.get("get secrets", 0)
    per_certificate = max(0, secret_reads - allowed_secret_reads) / COUNT
    writes = {k: n for k, n in by_kind.items() if k.split()[0] not in READS and k.split()[1] != "leases"}
    print(
        f"\n{what}: {COUNT} Certificates, idle after {seconds:.2f}s; requests: {dict(sorted(by_kind.items()))}; "
        f"Secret GETs {secret_reads} (CA issuer checks allowed: {allowed_secret_reads}), "
        f"{per_certificate:.2f} per Certificate; writes other than the Lease: {sum(writes.values())} "
        f"({sum(writes.values()) / COUNT:.2f} per Certificate)"
    )
    assert secret_reads <= allowed_secret_reads, (
        f"{what} read {secret_reads} Secrets for {COUNT} Certificates ({per_certificate:.2f} per Certificate beyond "
        f"the {allowed_secret_reads} CA issuer checks)"
    )
    assert not writes, f"{what} wrote: {writes}"
    assert counts.value("certmint_issuances_total") == 0


@pytest.fixture
def single(control_plane: ControlPlane, operator: OperatorProcess, namespace: str) -> Iterator[OperatorProcess]:
    with stand_ins(control_plane, operator, [_env("restarted", namespace)], first_run=500) as (op,):
        yield op


def test_a_restart_with_everything_in_place_asks_nothing_per_certificate(
    api: client.ApiClient, ca_issuer: str, namespace: str, single: OperatorProcess
) -> None:
    cm = Certmint(api)
    serials = _issue_all(cm, namespace, ca_issuer)
    timers = _wait_idle(single, COUNT, "the first operator to go idle").value("certmint_scheduled_timers")

    single.stop()  # SIGTERM, as a rollout does
    started = time.monotonic()
    single.start()
    idle = _wait_idle(single, timers, "the restarted operator to go idle with every timer back")
    took = time.monotonic() - started

    _check_requests("restart (SIGTERM, new process)", idle, _ca_cluster_issuers(api), took)
    assert _serials(cm, namespace, list(serials)) == serials


@pytest.fixture
def pair(control_plane: ControlPlane, operator: OperatorProcess, namespace: str) -> Iterator[list[OperatorProcess]]:
    envs = [_env(f"replica-{i}", namespace) for i in range(2)]
    with stand_ins(control_plane, operator, envs, first_run=510) as replicas:
        yield replicas


def test_a_standby_that_takes_over_asks_nothing_per_certificate(
    api: client.ApiClient, ca_issuer: str, namespace: str, pair: list[OperatorProcess]
) -> None:
    cm = Certmint(api)
    leader = wait_for(
        lambda: next((p for p in pair if p.metrics().value("certmint_leader") == 1), None),
        "one replica to hold the Lease",
    )
    assert leader is not None
    standby = next(p for p in pair if p is not leader)
    serials = _issue_all(cm, namespace, ca_issuer)
    timers = _wait_idle(leader, COUNT, "the leader to go idle").value("certmint_scheduled_timers")

    before = standby.metrics()
    assert before.value("certmint_leader") == 0
    killed = time.monotonic()
    leader.kill()  # SIGKILL: the Lease is not handed over, the standby waits for it to expire
    idle = _wait_idle(standby, timers, "the standby to take over and go idle with every timer")
    took = time.monotonic() - killed

    _check_requests("standby takeover (leader SIGKILLed, lease 4s)", idle - before, _ca_cluster_issuers(api), took)
    assert _serials(cm, namespace, list(serials)) == serials
