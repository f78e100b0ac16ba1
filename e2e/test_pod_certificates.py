"""End to end: pods whose identity and trust come only from the kubelet and certmint (issue 15).

A CA ClusterIssuer ``e2e-pods`` (under the chart's bootstrap issuer) serves pod certificates as the signer
``certmint.dev/e2e-pods``: its ``spec.podCertificates`` names the trust domain, allows two ServiceAccounts and asks
the kubelet to refresh early (``refreshBeforePercentage: 90``, so that a one-hour certificate is refreshed within the
test). The operator runs with the chart's ``podCertificates.enabled`` (e2e/test_mtls.py's ``operator`` fixture sets it
wherever the cluster serves PodCertificateRequests).

A server and a client pod mount one projected volume and nothing else: a ``podCertificate`` source (the kubelet makes
the key on the node, asks for the certificate with a PodCertificateRequest and writes ``tls.key`` and the chain
``tls.crt``) and a ``clusterTrustBundle`` source by signer name (the issuer's trust anchors, ``ca.crt``). No Secret
and no ServiceAccount token is mounted. They talk mTLS: the server logs the client's verified SPIFFE ID, the client
checks and logs the server's.

1. pod-mtls      both pods start once their requests are Issued; each side logs the other's SPIFFE ID, and the
                 serials they see are those of the leaves in the Issued requests;
2. pod-refused   a pod of a ServiceAccount the issuer does not allow never starts: its request is Denied with reason
                 ServiceAccountNotAllowed, and the kubelet reports the reason on the pod;
3. pod-rotation  the client connects every 250 ms while the kubelet refreshes both pods' certificates (a new key, a
                 new request, from ``beginRefreshAt`` plus the kubelet's own 0-5 min): both serials change and not
                 one handshake fails. The earliest refresh Kubernetes allows is 10 minutes after notBefore, so this
                 scenario takes 10-17 minutes: the mesh starts first in the run (marker ``e2e_early``), and the
                 rotation is checked last (``e2e_late``), so e2e/test_mtls.py's scenarios run during the wait.

Prints ``e2e: scenario=<name> ...`` lines as test_mtls.py does.
"""

# The fixtures kube, operator and provider are e2e/test_mtls.py's (session-scoped: one install for the run),
# imported: parameters of those names are meant to shadow the imports (that is how pytest hands them over).
# ruff: noqa: F811

from __future__ import annotations

import datetime
import functools
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client
from tests.integration import kubeutil
from tests.integration.builders import ISOLATION_POLICY
from tests.podcert import PCR_GROUP, PCR_PLURAL, PCR_VERSION, condition

from e2e.conftest import missing
from e2e.test_mtls import (  # noqa: F401  (kube, operator, provider: the module-scoped fixtures, shared)
    BOOTSTRAP,
    OPERATOR_NS,
    PORT,
    WORKLOADS,
    ClusterProvider,
    Installed,
    Kube,
    attempts,
    create_pod,
    expose_server,
    kube,
    operator,
    provider,
    serial,
    serves_pod_certificates,
    summary,
    wait_for,
    wait_running,
)

pytestmark = pytest.mark.e2e
ISSUER = "e2e-pods"
SIGNER = f"certmint.dev/{ISSUER}"
CA_SECRET = "e2e-pods-ca"
TRUST_DOMAIN = "cluster.local"
LIFETIME_S = 3600  # the shortest a pod certificate may live (the API's rule)
KEY_TYPE = "ECDSAP256"
INTERVAL_S = 0.25
# The kubelet refreshes from beginRefreshAt (>= notBefore + 10 min) plus 0-5 min of its own, in a pass every 1-2 min.
ROTATION_TIMEOUT_S = 25 * 60

#: Slow polls for the long wait: PodCertificateRequests every 5 s.
wait_slowly = functools.partial(kubeutil.wait_for, interval=5, transient=(client.ApiException,))


def spiffe(ns: str, sa: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{ns}/sa/{sa}"


def identity_volume() -> dict[str, Any]:
    """The pod's only credentials: its certificate from the kubelet and the signer's trust anchors, in one volume."""
    pod_certificate = {
        "signerName": SIGNER,
        "keyType": KEY_TYPE,
        "maxExpirationSeconds": LIFETIME_S,
        "keyPath": "tls.key",
        "certificateChainPath": "tls.crt",
    }
    # A signer-linked trust bundle is selected by signerName and a label selector; an absent selector matches none.
    trust = {"signerName": SIGNER, "labelSelector": {}, "path": "ca.crt"}
    return {
        "name": "tls",
        "projected": {"sources": [{"podCertificate": pod_certificate}, {"clusterTrustBundle": trust}]},
    }


@dataclass
class Pods:
    ns: str


@pytest.fixture(scope="session")
def pods(kube: Kube, operator: Installed) -> Iterator[Pods]:
    """The pod-certificate issuer (Published trust anchors) and a namespace with the ServiceAccounts and scripts."""
    if not serves_pod_certificates(kube):
        missing("the cluster does not serve PodCertificateRequests (feature gate PodCertificateRequest)")
    ns = f"podcert-{uuid.uuid4().hex[:6]}"
    kube.wait_ready("ClusterIssuer", BOOTSTRAP, timeout=60)
    kube.apply(
        "Certificate",
        CA_SECRET,
        {
            "isCA": True,
            "commonName": "certmint e2e pod CA",
            "secretName": CA_SECRET,
            "duration": "24h",
            "issuerRef": {"name": BOOTSTRAP, "kind": "ClusterIssuer"},
        },
        OPERATOR_NS,
    )
    pod_certificates = {
        "signerName": SIGNER,
        "trustDomain": TRUST_DOMAIN,
        "allowedServiceAccounts": ["{namespace}/pod-server", "{namespace}/pod-client"],
        "refreshBeforePercentage": 90,
    }
    policy = {**ISOLATION_POLICY, "allowedNamespaces": [ns]}
    kube.apply(
        "ClusterIssuer",
        ISSUER,
        {"ca": {"secretName": CA_SECRET}, "podCertificates": pod_certificates, "policy": policy},
    )
    try:
        kube.wait_ready("ClusterIssuer", ISSUER, timeout=60)
        published = wait_for(
            lambda: (
                (kube.get("ClusterIssuer", ISSUER).get("status", {}).get("podCertificates", {}).get("state"))
                == "Published"
            ),
            f"ClusterIssuer {ISSUER}: trust anchors published as a ClusterTrustBundle",
            60,
        )
        assert published
        kube.core.create_namespace({"metadata": {"name": ns}})
        for sa in ("pod-server", "pod-client", "intruder"):
            kube.core.create_namespaced_service_account(ns, {"metadata": {"name": sa}})
        scripts = {p.name: p.read_text() for p in sorted(WORKLOADS.glob("*.py"))}
        kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "mtls-scripts"}, "data": scripts})
        yield Pods(ns)
    finally:
        try:
            kube.core.delete_namespace(ns)
        except client.ApiException as e:
            if e.status != 404:
                raise
        for kind, name, namespace in (("ClusterIssuer", ISSUER, None), ("Certificate", CA_SECRET, OPERATOR_NS)):
            try:
                kube.delete(kind, name, namespace)
            except client.ApiException as e:
                if e.status != 404:
                    raise


# -- PodCertificateRequests, as the kubelet made them ---------------------------------------------------------


def requests_of(kube: Kube, ns: str, pod: str) -> list[dict[str, Any]]:
    """The pod's PodCertificateRequests, oldest first."""
    listed = kube.custom.list_namespaced_custom_object(PCR_GROUP, PCR_VERSION, ns, PCR_PLURAL)
    mine = [r for r in listed["items"] if r["spec"]["podName"] == pod]
    return sorted(mine, key=lambda r: (r["metadata"]["creationTimestamp"], r["metadata"]["name"]))


def answer_of(req: dict[str, Any]) -> str | None:
    """Issued, Denied or Failed; None while pending."""
    cond = condition(req)
    return None if cond is None else str(cond["type"])


def issued_leaves(kube: Kube, ns: str, pod: str) -> list[x509.Certificate]:
    """The leaves of the pod's Issued requests, oldest first."""
    leaves = []
    for req in requests_of(kube, ns, pod):
        if answer_of(req) == "Issued":
            leaves.append(x509.load_pem_x509_certificates(req["status"]["certificateChain"].encode())[0])
    return leaves


def uris_of(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(name.value) for name in san]


def credential_volumes(kube: Kube, ns: str, pod: str) -> list[dict[str, Any]]:
    """The stored pod's volumes (the API server drops a podCertificate source silently while its gate is off)."""
    resp = kube.core.read_namespaced_pod(pod, ns, _preload_content=False)
    return list(json.loads(resp.data)["spec"]["volumes"])


# -- the mesh: a server and a client on pod certificates only ----------------------------------------------------


@dataclass
class Mesh:
    ns: str
    server: str
    client: str
    server_id: str
    client_id: str
    started: float  # time.time() when the client started
    issued: dict[str, x509.Certificate]  # pod -> its first leaf


def start_pod(kube: Kube, provider: ClusterProvider, ns: str, name: str, sa: str, argv: list[str], **kw: Any) -> None:
    create_pod(kube, provider, ns, name, sa, argv, identity_volume(), **kw)
    volumes = credential_volumes(kube, ns, name)
    assert [sorted(v) for v in volumes] == [["configMap", "name"], ["name", "projected"]], volumes
    sources = next(v for v in volumes if v["name"] == "tls")["projected"]["sources"]
    assert [sorted(s) for s in sources] == [["podCertificate"], ["clusterTrustBundle"]], (
        f"pod {name}: the API server changed its credentials volume: {sources}"
    )


@pytest.fixture(scope="session")
def mesh(kube: Kube, provider: ClusterProvider, pods: Pods) -> Mesh:
    ns = pods.ns
    argv = ["/scripts/mtls_server.py", "--tls-dir", "/tls", "--port", str(PORT)]
    start_pod(kube, provider, ns, "pod-server", "pod-server", argv, restart="Always", labels={"app": "pod-server"})
    # Running means mounted: the kubelet mounts a podCertificate source only once its request is Issued.
    ip, _ = expose_server(kube, ns, "pod-server")
    server_id, client_id = spiffe(ns, "pod-server"), spiffe(ns, "pod-client")
    started = time.time()
    argv = ["/scripts/mtls_client.py", "--host", ip, "--port", str(PORT), "--server-id", server_id]
    start_pod(kube, provider, ns, "pod-client", "pod-client", [*argv, "--interval", str(INTERVAL_S)], restart="Always")
    wait_running(kube, "pod-client", ns)
    issued = {}
    for pod in ("pod-server", "pod-client"):
        leaves = issued_leaves(kube, ns, pod)
        assert len(leaves) == 1, f"pod {pod}: {len(leaves)} Issued requests before any refresh"
        issued[pod] = leaves[0]
    return Mesh(ns, "pod-server", "pod-client", server_id, client_id, started, issued)


@pytest.mark.e2e_early
def test_pods_with_only_kubelet_credentials_talk_mtls_and_log_each_others_spiffe_id(kube: Kube, mesh: Mesh) -> None:
    ns = mesh.ns
    ok = wait_for(
        lambda: ok if len(ok := [a for a in attempts(kube.log_records(mesh.client, ns)) if a["ok"]]) >= 5 else None,
        "the client's first successful handshakes",
        60,
    )
    server_log = [r for r in kube.log_records(mesh.server, ns) if r.get("event") == "accepted"]
    assert server_log, "the server logged no accepted connection"
    # Each side verified the other's chain to the ClusterTrustBundle and logs the other's SPIFFE ID.
    assert {tuple(r["uris"]) for r in server_log} == {(mesh.client_id,)}
    assert {tuple(a["server_uris"]) for a in ok} == {(mesh.server_id,)}
    # What they present is what certmint signed in the Issued requests: the URI alone, for the pod's own key.
    for pod, sa in ((mesh.server, "pod-server"), (mesh.client, "pod-client")):
        leaf = mesh.issued[pod]
        assert uris_of(leaf) == [spiffe(ns, sa)]
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert lifetime.total_seconds() == LIFETIME_S
    assert {a["server_serial"] for a in ok} == {serial(mesh.issued[mesh.server])}
    assert {r["client_serial"] for r in server_log} == {serial(mesh.issued[mesh.client])}
    summary(
        f"e2e: scenario=pod-mtls handshakes={len(ok)} failures=0 server_id={mesh.server_id} client_id={mesh.client_id} "
        f"signer={SIGNER}"
    )


@pytest.mark.e2e_early
def test_a_pod_whose_service_account_is_refused_does_not_start(
    kube: Kube, provider: ClusterProvider, pods: Pods
) -> None:
    ns = pods.ns
    argv = ["/scripts/mtls_server.py", "--tls-dir", "/tls", "--port", str(PORT)]
    start = time.monotonic()
    start_pod(kube, provider, ns, "intruder", "intruder", argv)

    def denied() -> dict[str, Any] | None:
        for req in requests_of(kube, ns, "intruder"):
            cond = condition(req)
            if cond is not None:
                assert cond["type"] == "Denied", f"the intruder's request was answered {cond}"
                return cond
        return None

    cond = wait_for(denied, "the intruder's PodCertificateRequest Denied", 90)
    seen_s = time.monotonic() - start
    req = requests_of(kube, ns, "intruder")[0]
    created = datetime.datetime.fromisoformat(req["metadata"]["creationTimestamp"])
    answered_s = (datetime.datetime.fromisoformat(cond["lastTransitionTime"]) - created).total_seconds()
    assert cond["reason"] == "ServiceAccountNotAllowed", cond
    assert f"{ns}/intruder" in cond["message"], cond

    def reported() -> str | None:
        events = kube.core.list_namespaced_event(ns, field_selector="involvedObject.name=intruder").items
        return next((e.message for e in events if "ServiceAccountNotAllowed" in (e.message or "")), None)

    event = wait_for(reported, "the kubelet reports the denial on the pod", 90)
    pod = kube.pod("intruder", ns)
    assert pod.status.phase == "Pending", pod.status
    waiting = [s.state.waiting.reason for s in pod.status.container_statuses or [] if s.state.waiting]
    assert waiting in ([], ["ContainerCreating"]), pod.status
    summary(
        f"e2e: scenario=pod-refused denied_seen_s={seen_s:.2f} (from the pod's create) answered_s={answered_s:.0f} "
        f"(from the request's create, whole seconds) reason={cond['reason']} pod_phase={pod.status.phase} "
        f"event={event[:160]!r}"
    )


@pytest.mark.e2e_late
def test_the_kubelet_rotates_both_certificates_without_one_failed_handshake(kube: Kube, mesh: Mesh) -> None:
    ns = mesh.ns

    def refreshed() -> dict[str, x509.Certificate] | None:
        leaves = {pod: issued_leaves(kube, ns, pod) for pod in (mesh.server, mesh.client)}
        return {pod: found[-1] for pod, found in leaves.items()} if all(len(f) >= 2 for f in leaves.values()) else None

    new = wait_slowly(refreshed, "the kubelet's second PodCertificateRequest of each pod Issued", ROTATION_TIMEOUT_S)
    refreshed_at = time.time()
    old_serials = {pod: serial(cert) for pod, cert in mesh.issued.items()}
    new_serials = {pod: serial(cert) for pod, cert in new.items()}
    assert all(old_serials[pod] != new_serials[pod] for pod in new), (old_serials, new_serials)
    for pod, cert in new.items():  # a new key for each refresh
        assert cert.public_key() != mesh.issued[pod].public_key(), f"pod {pod} kept its key"

    def both_on_new() -> list[dict[str, Any]] | None:
        seen = [a for a in attempts(kube.log_records(mesh.client, ns), since=mesh.started)]
        on_new = [a for a in seen if a["ok"] and a["server_serial"] == new_serials[mesh.server]]
        on_new = [a for a in on_new if a["client_serial"] == new_serials[mesh.client]]
        return seen if len(on_new) >= 5 else None

    seen = wait_for(both_on_new, "handshakes with both pods on their refreshed certificates", 120)
    failures = [a for a in seen if not a["ok"]]
    pairs = {(a.get("client_serial"), a.get("server_serial")) for a in seen if a["ok"]}
    issued_at = min(cert.not_valid_before_utc for cert in mesh.issued.values()).timestamp()
    summary(
        f"e2e: scenario=pod-rotation handshakes={len(seen)} failures={len(failures)} serial_pairs_seen={len(pairs)} "
        f"refreshed_s={refreshed_at - issued_at:.0f} (from the first notBefore) "
        f"server_serials={old_serials[mesh.server]}>{new_serials[mesh.server]} "
        f"client_serials={old_serials[mesh.client]}>{new_serials[mesh.client]}"
    )
    assert not failures, failures[:5]
    server_ids = {tuple(r["uris"]) for r in kube.log_records(mesh.server, ns) if r.get("event") == "accepted"}
    assert server_ids == {(mesh.client_id,)}, server_ids
