"""An API server outage, as an operator on a real cluster lives through it: nothing lost, nothing flooded.

The API server is killed with a batch of issuances in flight and started again. Every Certificate must
become Ready, and the operator's log must say what happened in a few lines: a WARNING when the API
server became unreachable, with the plan, and an INFO when it is back; no traceback (tracebacks mean
bugs), no line per failed request or per key.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, certificate, cluster_issuer, unique
from tests.integration.conftest import OPERATOR_NAMESPACE
from tests.integration.kubeutil import wait_for
from tests.integration.outage import api_server_down

pytestmark = pytest.mark.integration

CERTIFICATES = 80
OUTAGE_S = 5.0  # how long the API server stays away: the scenario, not a wait for something
MAX_OUTAGE_LINES = 4  # a WARNING per outage; a little slack for the kopf watch streams' own reconnects


@pytest.fixture
def quiet_operator(control_plane: ControlPlane, operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """The operator at INFO, as users run it, with a Lease longer than the outage (losing it is another test)."""
    operator.stop()
    op = OperatorProcess(
        kubeconfig=control_plane.admin_kubeconfig,
        log_dir=control_plane.workdir / "logs",
        namespace=OPERATOR_NAMESPACE,
        extra_env={"CERTMINT_LEASE_DURATION_SECONDS": "120", "POD_NAME": "outage"},
        verbose=False,
    )
    op.runs = 200
    op.start()
    try:
        yield op
    finally:
        op.stop()
        operator.start()


def _ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _lines(op: OperatorProcess, since: int) -> list[str]:
    return op.log_path.read_text(errors="replace")[since:].splitlines()


def test_api_server_crash_with_issuances_in_flight(
    api: client.ApiClient, control_plane: ControlPlane, quiet_operator: OperatorProcess
) -> None:
    cm = Certmint(api)
    ns = cm.namespace(unique("outage"))
    issuer = unique("outage-ss")
    cm.create(cluster_issuer(issuer))
    names = [f"c{i}" for i in range(CERTIFICATES)]
    log_start = quiet_operator.log_path.stat().st_size
    for name in names:
        cm.create(certificate(name, ns, issuer_name=issuer))

    with api_server_down(control_plane, signal.SIGKILL) as killed_at:
        time.sleep(OUTAGE_S)
        assert quiet_operator.proc is not None and quiet_operator.proc.poll() is None
    print(f"\nkube-apiserver down for {time.monotonic() - killed_at:.1f}s")

    def all_ready() -> bool:
        items = cm.custom.list_namespaced_custom_object("certmint.dev", "v1alpha1", ns, "certificates")["items"]
        return sum(_ready(item) for item in items) == CERTIFICATES

    wait_for(all_ready, f"all {CERTIFICATES} Certificates to be Ready after the outage", timeout=180, interval=0.5)
    assert quiet_operator.proc is not None and quiet_operator.proc.poll() is None, "the operator exited"

    lines = _lines(quiet_operator, log_start)
    noisy = [line for line in lines if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]
    print(f"operator log during and after the outage: {len(lines)} lines, {len(noisy)} WARNING or worse:")
    print("\n".join(noisy[:20]))
    assert not any("Traceback" in line for line in lines), "a traceback in the log: " + "\n".join(lines[:80])
    assert not any(" ERROR " in line for line in noisy), "\n".join(noisy[:40])
    assert 1 <= len(noisy) <= MAX_OUTAGE_LINES, "\n".join(noisy[:40])
    assert any("API server unavailable" in line for line in noisy)
    assert any(" INFO " in line and "API server available again" in line for line in lines)
