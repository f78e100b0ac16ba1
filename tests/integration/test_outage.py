"""An API server outage, as an operator on a real cluster lives through it: nothing lost, nothing flooded.

The API server is killed with a batch of issuances in flight and started again. Every Certificate must
become Ready, and the operator's log must say what happened in a few lines: a WARNING when the API
server became unreachable, with the plan, and an INFO when it is back; no traceback (tracebacks mean
bugs), no line per failed request or per key.

An outage longer than the Lease (a graceful restart of the API server takes a minute) costs the operator its Lease:
it steps down and campaigns again in the same process, and leads again when the server is back.
"""

from __future__ import annotations

import contextlib
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, certificate
from tests.integration.kubeutil import wait_for
from tests.integration.outage import api_server_down
from tests.integration.replicas import FAST_LEASE, stand_ins

pytestmark = pytest.mark.integration

CERTIFICATES = 150
OUTAGE_S = 5.0  # how long the API server stays away: the scenario, not a wait for something
MAX_OUTAGE_LINES = 4  # a WARNING per outage; a little slack for the kopf watch streams' own reconnects


def _own_operator(
    control_plane: ControlPlane, operator: OperatorProcess, runs: int, env: dict[str, str]
) -> contextlib.AbstractContextManager[list[OperatorProcess]]:
    """The operator at INFO, as users run it, in place of the session's (restarted afterwards)."""
    return stand_ins(control_plane, operator, [{**env, "POD_NAME": f"outage-{runs}"}], first_run=runs, verbose=False)


@pytest.fixture
def quiet_operator(control_plane: ControlPlane, operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """With a Lease longer than the outage: losing it is the next test."""
    with _own_operator(control_plane, operator, 200, {"CERTMINT_LEASE_DURATION_SECONDS": "120"}) as (op,):
        yield op


@pytest.fixture
def short_lease_operator(control_plane: ControlPlane, operator: OperatorProcess) -> Iterator[OperatorProcess]:
    with _own_operator(control_plane, operator, 210, FAST_LEASE) as (op,):
        yield op


def _ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _lines(op: OperatorProcess, since: int) -> list[str]:
    return op.log_path.read_text(errors="replace")[since:].splitlines()


def test_api_server_crash_with_issuances_in_flight(
    api: client.ApiClient, control_plane: ControlPlane, quiet_operator: OperatorProcess
) -> None:
    cm = Certmint(api)
    ns, issuer = cm.namespace_and_issuer("outage")
    names = [f"c{i}" for i in range(CERTIFICATES)]
    log_start = quiet_operator.log_path.stat().st_size
    for name in names:
        cm.create(certificate(name, ns, issuer_name=issuer))

    in_flight = quiet_operator.metrics().value("certmint_workqueue_depth")
    with api_server_down(control_plane, signal.SIGKILL) as killed_at:
        time.sleep(OUTAGE_S)
        assert quiet_operator.proc is not None and quiet_operator.proc.poll() is None
    print(f"\nkube-apiserver down for {time.monotonic() - killed_at:.1f}s, {in_flight:.0f} keys queued or in flight")
    assert in_flight > 0, "every Certificate was done before the kill: the scenario needs work in flight"

    def all_ready() -> bool:
        items = cm.items("Certificate", ns)
        return sum(_ready(item) for item in items) == CERTIFICATES

    wait_for(all_ready, f"all {CERTIFICATES} Certificates to be Ready after the outage", timeout=180, interval=0.5)
    assert quiet_operator.proc is not None and quiet_operator.proc.poll() is None, "the operator exited"
    cm.create(certificate("after", ns, issuer_name=issuer))  # the watches are back, not only the retries
    cm.wait_ready("Certificate", "after", ns, timeout=60)

    lines = _lines(quiet_operator, log_start)
    noisy = [line for line in lines if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]
    print(f"operator log during and after the outage: {len(lines)} lines, {len(noisy)} WARNING or worse:")
    print("\n".join(noisy[:20]))
    assert not any("Traceback" in line for line in lines), "a traceback in the log: " + "\n".join(lines[:80])
    assert not any(" ERROR " in line for line in noisy), "\n".join(noisy[:40])
    assert 1 <= len(noisy) <= MAX_OUTAGE_LINES, "\n".join(noisy[:40])
    assert any("API server unavailable" in line for line in noisy)
    assert any(" INFO " in line and "API server available again" in line for line in lines)


def test_an_outage_longer_than_the_lease_steps_down_and_leads_again(
    api: client.ApiClient, control_plane: ControlPlane, short_lease_operator: OperatorProcess
) -> None:
    op = short_lease_operator
    assert op.proc is not None
    pid = op.proc.pid
    cm = Certmint(api)
    ns, issuer = cm.namespace_and_issuer("relead")
    wait_for(lambda: op.metrics().value("certmint_leader") == 1, "the operator to lead")
    log_start = op.log_path.stat().st_size

    # Down until the Lease is lost, as in a graceful restart of about a minute (SIGTERM makes this test a minute
    # longer, the operator sees the same: refused connections until its Lease runs out).
    with api_server_down(control_plane, signal.SIGKILL):
        wait_for(lambda: op.metrics().value("certmint_leader") == 0, "the operator to step down", timeout=30)
        assert op.proc.poll() is None, f"the operator exited; log: {op.log_path}"

    wait_for(lambda: op.metrics().value("certmint_leader") == 1, "the operator to lead again", timeout=60)
    cm.create(certificate("after", ns, issuer_name=issuer))
    cm.wait_ready("Certificate", "after", ns, timeout=60)
    assert op.proc.poll() is None and op.proc.pid == pid, "the same process leads again"
    lines = _lines(op, log_start)
    assert any("lost the Lease" in line for line in lines)
    assert any("became the leader" in line for line in lines)
    assert not any("Traceback" in line or " ERROR " in line for line in lines), "\n".join(lines[:60])
    noisy = [line for line in lines if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]
    print("\noperator log, WARNING or worse:\n" + "\n".join(noisy))
    assert len(noisy) <= MAX_OUTAGE_LINES + 1, "\n".join(noisy)  # + the Lease lost
