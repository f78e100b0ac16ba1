"""The chart's probes against the operator's real endpoints, with replicaCount=2 (the HA value set).

Every replica must pass the liveness probe the chart configures (/healthz), or the
kubelet restarts it: a standby that reports itself dead would crash-loop forever.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from tests.chart.conftest import install
from tests.chart.value_sets import value_sets
from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.kubeutil import wait_for

pytestmark = pytest.mark.chart


def test_every_replica_passes_the_charts_probes(control_plane: ControlPlane, api: client.ApiClient, helm: Path) -> None:
    installed = install(control_plane, api, helm, "probes", value_sets("probes")["ha"])
    container = installed.deployment["spec"]["template"]["spec"]["containers"][0]
    liveness, readiness = container["livenessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["path"]
    replicas = []
    try:
        for i in range(installed.deployment["spec"]["replicas"]):
            env = installed.operator_env()
            env.pop("CERTMINT_HTTP_PORT")
            env["POD_NAME"] = f"probes-{i}"
            log_dir = control_plane.workdir / "logs" / f"probes-{i}"
            log_dir.mkdir(parents=True, exist_ok=True)
            proc = OperatorProcess(installed.kubeconfig, log_dir, namespace=installed.namespace, extra_env=env)
            proc.start()  # returns once /readyz answers 200
            replicas.append(proc)

        def leaders() -> list[str]:
            return [p.extra_env["POD_NAME"] for p in replicas if p.metrics().value("certmint_leader") == 1]

        wait_for(lambda: len(leaders()) == 1, "exactly one leader", 30)
        for proc in replicas:
            assert proc.get(readiness)[0] == 200, f"{proc.extra_env['POD_NAME']} not ready"
            status, body = proc.get(liveness)
            assert status == 200, f"{proc.extra_env['POD_NAME']} fails the liveness probe: {status} {body.strip()}"
    finally:
        for proc in replicas:
            proc.stop()
