"""Smoke test of the local node: pods really run, the kubelet really projects Secrets.

A pod from the locally built workload image prints the content of a file
from a mounted Secret whenever it changes; the test reads the pod's log
through the API (API server -> kubelet -> containerd), then changes the
Secret and waits for the kubelet to refresh the mounted file.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import uuid

import pytest
from kubernetes import client, config
from tests.controlplane.cluster import ControlPlane
from tests.integration.kubeutil import timed_wait

from e2e.localnode import WORKLOAD_IMAGE, LocalNode

pytestmark = pytest.mark.e2e

WATCHER = """
import pathlib, sys, time
path, last = pathlib.Path("/etc/greeting/message"), None
while True:
    now = path.read_text()
    if now != last:
        print(f"message={now}", flush=True)
        last = now
    time.sleep(0.2)
"""


@pytest.fixture(scope="module")
def core(local_cluster: tuple[ControlPlane, LocalNode]) -> client.CoreV1Api:
    cp, _ = local_cluster
    return client.CoreV1Api(config.new_client_from_config(str(cp.admin_kubeconfig)))


def test_node_is_ready_and_from_the_same_release(core: client.CoreV1Api, local_cluster) -> None:  # type: ignore[no-untyped-def]
    _, node = local_cluster
    n = core.read_node(node.node_name)
    ready = [c for c in n.status.conditions if c.type == "Ready"]
    assert ready and ready[0].status == "True"
    assert n.status.node_info.kubelet_version == "v1.36.3"
    assert n.status.node_info.container_runtime_version.startswith("containerd://")
    assert {"type": "InternalIP", "address": node.slot.node_ip} in [a.to_dict() for a in n.status.addresses]


def test_pod_runs_and_kubelet_refreshes_mounted_secret(core: client.CoreV1Api, local_cluster) -> None:  # type: ignore[no-untyped-def]
    _, node = local_cluster
    ns = "default"
    name = f"greeting-{uuid.uuid4().hex[:6]}"
    first, second = f"hello-{uuid.uuid4().hex[:8]}", f"rotated-{uuid.uuid4().hex[:8]}"
    core.create_namespaced_secret(
        ns,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=name), data={"message": base64.b64encode(first.encode()).decode()}
        ),
    )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            restart_policy="Never",
            termination_grace_period_seconds=1,
            containers=[
                client.V1Container(
                    name="watcher",
                    image=WORKLOAD_IMAGE,
                    image_pull_policy="Never",
                    command=["python3", "-c", WATCHER],
                    volume_mounts=[client.V1VolumeMount(name="greeting", mount_path="/etc/greeting", read_only=True)],
                )
            ],
            volumes=[client.V1Volume(name="greeting", secret=client.V1SecretVolumeSource(secret_name=name))],
        ),
    )
    core.create_namespaced_pod(ns, pod)
    try:

        def running() -> bool:
            p = core.read_namespaced_pod(name, ns)
            assert p.status.phase not in ("Failed", "Succeeded"), p.status
            return bool(p.status.phase == "Running")

        started = timed_wait(running, "pod Running", 120, 0.2)
        p = core.read_namespaced_pod(name, ns)
        assert p.spec.node_name == node.node_name
        assert ipaddress.ip_address(p.status.pod_ip) in node.slot.subnet

        def log_has(text: str):  # type: ignore[no-untyped-def]
            return lambda: f"message={text}" in core.read_namespaced_pod_log(name, ns)

        timed_wait(log_has(first), "the Secret's first value in the pod's log", 60, 0.2)
        assert f"message={second}" not in core.read_namespaced_pod_log(name, ns)

        core.patch_namespaced_secret(name, ns, {"data": {"message": base64.b64encode(second.encode()).decode()}})
        refreshed = timed_wait(log_has(second), "the kubelet refreshing the mounted Secret", 120, 0.2)
        print(f"\npod Running {started:.1f}s after create; Secret change in the volume after {refreshed:.1f}s")
    finally:
        core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
        core.delete_namespaced_secret(name, ns)


CLIENT = """
import json, os, ssl, sys, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
out = {"service": urllib.request.urlopen(f"http://{sys.argv[1]}/", timeout=10).status}
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
auth = {"Authorization": "Bearer " + open(f"{sa}/token").read()}
req = urllib.request.Request(f"https://{host}:{port}/version", headers=auth)
out["api"] = json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["gitVersion"]
# Destinations in this pod's routing table (hex, little endian): no default route (00000000) may be among them.
out["routes"] = [line.split()[1] for line in open("/proc/net/route").read().splitlines()[1:]]
print(json.dumps(out), flush=True)
"""


def test_pods_reach_services_and_the_api_server_but_nothing_outside(core: client.CoreV1Api) -> None:
    ns = "default"
    name = f"web-{uuid.uuid4().hex[:6]}"
    labels = {"app": name}
    image = {"image": WORKLOAD_IMAGE, "image_pull_policy": "Never"}
    core.create_namespaced_pod(
        ns,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels=labels),
            spec=client.V1PodSpec(
                termination_grace_period_seconds=1,
                containers=[
                    client.V1Container(
                        name="web",
                        command=["python3", "-m", "http.server", "8080"],
                        ports=[client.V1ContainerPort(container_port=8080)],
                        readiness_probe=client.V1Probe(
                            tcp_socket=client.V1TCPSocketAction(port=8080), period_seconds=1
                        ),
                        **image,
                    )
                ],
            ),
        ),
    )
    svc = core.create_namespaced_service(
        ns,
        client.V1Service(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1ServiceSpec(selector=labels, ports=[client.V1ServicePort(port=80, target_port=8080)]),
        ),
    )
    try:
        timed_wait(
            lambda: any(
                c.type == "Ready" and c.status == "True"
                for c in (core.read_namespaced_pod(name, ns).status.conditions or [])
            ),
            "the web pod Ready",
            120,
            0.2,
        )
        core.create_namespaced_pod(
            ns,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name=f"{name}-client"),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[
                        client.V1Container(
                            name="client", command=["python3", "-c", CLIENT, svc.spec.cluster_ip], **image
                        )
                    ],
                ),
            ),
        )

        def finished() -> bool:
            phase = core.read_namespaced_pod(f"{name}-client", ns).status.phase
            return bool(phase in ("Succeeded", "Failed"))

        timed_wait(finished, "the client pod to finish", 120, 0.2)
        log = core.read_namespaced_pod_log(f"{name}-client", ns)
        assert core.read_namespaced_pod(f"{name}-client", ns).status.phase == "Succeeded", log
        result = json.loads(log.strip().splitlines()[-1])
        assert result["service"] == 200
        assert result["api"] == "v1.36.3"
        assert result["routes"] and "00000000" not in result["routes"], result["routes"]
    finally:
        core.delete_namespaced_pod(f"{name}-client", ns, grace_period_seconds=0)
        core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
        core.delete_namespaced_service(name, ns)
