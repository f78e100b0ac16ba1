"""certmint as a signer of Kubernetes PodCertificateRequests, against the real API server (issue 15).

The local control plane serves certificates.k8s.io/v1beta1 PodCertificateRequests and ClusterTrustBundles. No kubelet
runs: the tests create the requests as admin, as a kubelet would (an empty PKCS#10 request signed by the pod's key in
``stubPKCS10Request``, or the deprecated ``pkixPublicKey`` + ``proofOfPossession``), with made-up pod, node and UIDs,
which the API server accepts from a caller that is not a node. The answers are awaited on a watch of the requests,
which is what the kubelet waits on. The API server checks an Issued answer itself (lifetime, notBefore near its
clock, beginRefreshAt margins, the chain's leaf matching those times and the request's key), so an answer that
breaks those rules would be refused and the request would stay unanswered here.

Asserted: an allowed pod gets exactly its SPIFFE ID under the issuer's root; a refused namespace, key type and
ServiceAccount are Denied with the reason that says so; a request for another signer, or for a certmint signer no
ClusterIssuer enables, is left untouched; the issuer's root is published as a ClusterTrustBundle linked to the
signer. Measured and printed: a burst of 1,000 requests (requests/s, p50/p99 from create to Issued, the operator's
own API requests).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification
from kubernetes import client, config

from certmint.pki.timestamps import parse_rfc3339
from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, certificate, cluster_issuer, unique
from tests.integration.conftest import OPERATOR_NAMESPACE
from tests.integration.kubeutil import wait_for
from tests.integration.pcrs import AnswerWatch, PodRequests
from tests.integration.replicas import stand_ins
from tests.podcert import PodKey, pcr, pod_key, spki

pytestmark = pytest.mark.integration

TRUST_DOMAIN = "pods.certmint.test"
BURST = 1000
BURST_WORKERS = 16  # concurrent creates, each on a connection of its own
REFRESH_MARGIN = datetime.timedelta(minutes=10)
SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class PodSigner:
    issuer: str
    signer_name: str
    allowed: str  # a namespace the policy allows
    refused: str  # a namespace the policy does not
    burst: str  # an allowed namespace for the burst
    roots: list[x509.Certificate]
    operator: OperatorProcess


@pytest.fixture(scope="module")
def pod_operator(control_plane: ControlPlane, operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """The operator with pod certificates on, at INFO as users run it, in place of the session's."""
    env = {"CERTMINT_POD_CERTIFICATES": "true"}
    with stand_ins(control_plane, operator, [env], first_run=1500, verbose=False) as (op,):
        yield op


@pytest.fixture(scope="module")
def signer(api: client.ApiClient, pod_operator: OperatorProcess) -> Iterator[PodSigner]:
    """A CA ClusterIssuer that signs pod certificates: ServiceAccounts web and api of one namespace, any of the
    burst namespace; ECDSA and Ed25519 keys; at most 24h."""
    cm = Certmint(api)
    name = unique("pods")
    allowed, refused, burst = (cm.namespace(unique(p)) for p in ("pods-ok", "pods-no", "pods-burst"))
    cm.create(cluster_issuer(f"{name}-selfsigned"))
    cm.create(
        certificate(
            name,
            OPERATOR_NAMESPACE,
            issuer_name=f"{name}-selfsigned",
            commonName=f"{name} CA",
            isCA=True,
            duration="72h",
        )
    )
    cm.wait_ready("Certificate", name, OPERATOR_NAMESPACE)
    body = cluster_issuer(
        name,
        ca_secret=f"{name}-tls",
        policy={
            "allowedNamespaces": [allowed, burst],
            "allowedKeyAlgorithms": ["ECDSA", "Ed25519"],
            "allowedURIs": [f"spiffe://{TRUST_DOMAIN}/ns/{{namespace}}/sa/*"],
            "maxDuration": "24h",
        },
    )
    body["spec"]["podCertificates"] = {
        "signerName": f"certmint.dev/{name}",
        "trustDomain": TRUST_DOMAIN,
        "allowedServiceAccounts": [f"{allowed}/web", f"{allowed}/api", f"{burst}/*"],
    }
    cm.create(body)
    cm.wait_ready("ClusterIssuer", name)
    roots = x509.load_pem_x509_certificates(cm.secret_data(f"{name}-tls", OPERATOR_NAMESPACE)["ca.crt"])
    yield PodSigner(name, f"certmint.dev/{name}", allowed, refused, burst, roots, pod_operator)
    # The control plane is shared with later modules, whose operators run without pod certificates: a pod signer
    # left behind would get its status rewritten by them (status.podCertificates.state Disabled), a write that the
    # restart tests count.
    cm.delete("ClusterIssuer", name)
    cm.delete("ClusterIssuer", f"{name}-selfsigned")


def _time(obj: dict[str, Any], field: str) -> datetime.datetime:
    return parse_rfc3339(obj["status"][field])


def _answer(obj: dict[str, Any]) -> tuple[str, str, str]:
    (c,) = [c for c in obj["status"]["conditions"] if c["type"] in ("Issued", "Denied", "Failed")]
    return c["type"], c["status"], c["reason"]


def _assert_issued(obj: dict[str, Any], key: PodKey, signer: PodSigner, uri: str) -> x509.Certificate:
    """An Issued answer as the API and the issue want it; the leaf."""
    status = obj["status"]
    assert _answer(obj) == ("Issued", "True", "Issued"), status
    chain = x509.load_pem_x509_certificates(status["certificateChain"].encode())
    leaf = chain[0]
    # The request's key, and the attested identity only: one URI SAN, no subject, not a CA.
    assert leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == spki(key)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(uri)]
    assert len(leaf.subject) == 0
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    # The times: the leaf's own, within the API's rules.
    not_before, not_after, refresh = (_time(obj, f) for f in ("notBefore", "notAfter", "beginRefreshAt"))
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == (not_before, not_after)
    max_expiration = datetime.timedelta(seconds=obj["spec"]["maxExpirationSeconds"])
    assert datetime.timedelta(hours=1) <= not_after - not_before <= max_expiration
    assert not_before + REFRESH_MARGIN <= refresh <= not_after - REFRESH_MARGIN
    now = datetime.datetime.now(datetime.UTC)
    assert abs(now - not_before) <= SKEW
    # The chain leads to the issuer's root, as a client that trusts only that root would check.
    verifier = verification.PolicyBuilder().store(verification.Store(signer.roots)).time(now).build_client_verifier()
    verified = verifier.verify(leaf, chain[1:])
    assert verified.subjects == [x509.UniformResourceIdentifier(uri)]
    assert verified.chain[-1] in signer.roots
    return leaf


def _spiffe(namespace: str, service_account: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


def test_the_issuers_root_is_published_as_a_cluster_trust_bundle_for_its_signer(
    api: client.ApiClient, signer: PodSigner
) -> None:
    cm, requests = Certmint(api), PodRequests(api)
    bundle_name = f"certmint.dev:{signer.issuer}:anchors"

    def published() -> dict[str, Any] | None:
        pods = (cm.get("ClusterIssuer", signer.issuer).get("status") or {}).get("podCertificates") or {}
        return pods if pods.get("state") == "Published" else None

    pods = wait_for(published, f"ClusterIssuer {signer.issuer} status.podCertificates.state Published")
    assert pods is not None
    assert pods["signerName"] == signer.signer_name
    assert pods["clusterTrustBundle"] == bundle_name
    bundle = requests.trust_bundle(bundle_name)
    assert bundle is not None
    assert bundle["spec"]["signerName"] == signer.signer_name
    anchors = x509.load_pem_x509_certificates(bundle["spec"]["trustBundle"].encode())
    assert anchors == signer.roots
    assert bundle["metadata"]["labels"]["certmint.dev/issuer"] == signer.issuer
    issuer_uid = cm.get("ClusterIssuer", signer.issuer)["metadata"]["uid"]
    assert [o["uid"] for o in bundle["metadata"]["ownerReferences"]] == [issuer_uid]


@pytest.mark.parametrize(
    ("service_account", "key_type", "max_expiration_seconds", "legacy_key", "lifetime"),
    [
        ("web", "ECDSAP256", 5 * 3600, False, datetime.timedelta(hours=5)),
        ("api", "ED25519", None, False, datetime.timedelta(hours=24)),  # the API's default 24h; the policy's 24h
        ("web", "ECDSAP384", 7862400, False, datetime.timedelta(hours=24)),  # 91 days asked; the policy's 24h
        ("api", "ECDSAP256", 3600, True, datetime.timedelta(hours=1)),  # the deprecated pkixPublicKey form
    ],
    ids=["ecdsa-p256-5h", "ed25519-default", "ecdsa-p384-capped", "pkix-public-key-1h"],
)
def test_an_allowed_pod_gets_its_spiffe_id_under_the_issuers_root(
    api: client.ApiClient,
    signer: PodSigner,
    service_account: str,
    key_type: str,
    max_expiration_seconds: int | None,
    legacy_key: bool,
    lifetime: datetime.timedelta,
) -> None:
    requests = PodRequests(api)
    key = pod_key(key_type)
    name = unique("req")
    body = pcr(
        signer.allowed,
        name,
        signer_name=signer.signer_name,
        key=key,
        service_account=service_account,
        max_expiration_seconds=max_expiration_seconds,
        legacy_key=legacy_key,
    )
    with AnswerWatch(requests, signer.allowed) as answers:
        requests.create(body)
        obj = answers.wait([name], timeout=30)[name]
    leaf = _assert_issued(obj, key, signer, _spiffe(signer.allowed, service_account))
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == lifetime


@pytest.mark.parametrize(
    ("where", "service_account", "key_type", "reason", "says"),
    [
        ("refused", "web", "ECDSAP256", "NamespaceNotAllowed", "allowedNamespaces"),
        ("allowed", "web", "RSA3072", "UnsupportedKeyType", "allowedKeyAlgorithms"),
        ("allowed", "db", "ECDSAP256", "ServiceAccountNotAllowed", "/db"),
    ],
    ids=["wrong-namespace", "rsa-key", "excluded-service-account"],
)
def test_a_refused_pod_is_denied_with_the_reason(
    api: client.ApiClient, signer: PodSigner, where: str, service_account: str, key_type: str, reason: str, says: str
) -> None:
    requests = PodRequests(api)
    namespace = signer.refused if where == "refused" else signer.allowed
    name = unique("req")
    body = pcr(namespace, name, signer_name=signer.signer_name, key=pod_key(key_type), service_account=service_account)
    with AnswerWatch(requests, namespace) as answers:
        requests.create(body)
        obj = answers.wait([name], timeout=30)[name]
    assert _answer(obj) == ("Denied", "True", reason), obj["status"]
    (c,) = obj["status"]["conditions"]
    assert says in c["message"], c["message"]
    assert not obj["status"].get("certificateChain")


def test_requests_for_other_signers_are_left_untouched(api: client.ApiClient, signer: PodSigner) -> None:
    """A request for another signer, and one for a certmint signer that no ClusterIssuer enables, stay as created
    (not even their metadata is written), while a request created after them is answered."""
    requests = PodRequests(api)
    ns = signer.allowed
    others = {
        unique("other"): "other.example/x",
        unique("nobody"): f"certmint.dev/{unique('no-such-issuer')}",
    }
    key = pod_key("ECDSAP256")
    with AnswerWatch(requests, ns) as answers:
        created = {
            name: requests.create(pcr(ns, name, signer_name=s, key=key, service_account="web"))
            for name, s in others.items()
        }
        mine = unique("req")
        requests.create(pcr(ns, mine, signer_name=signer.signer_name, key=key, service_account="web"))
        answers.wait([mine], timeout=30)
        # The operator sees all requests on one watch, in the order they were written: it has seen the first two
        # by the time it answers the third.
        for name, before in created.items():
            now = requests.get(ns, name)
            assert now["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], now
            assert not (now.get("status") or {}).get("conditions"), now["status"]
        assert not set(others) & answers.answered.keys()


def _fast_client(control_plane: ControlPlane) -> client.ApiClient:
    """An admin client with enough pooled connections for the burst's workers."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(control_plane.admin_kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = BURST_WORKERS * 2
    return client.ApiClient(cfg)


def test_a_burst_of_1000_requests_is_signed(control_plane: ControlPlane, signer: PodSigner) -> None:
    api = _fast_client(control_plane)
    requests = PodRequests(api)
    ns = signer.burst
    # Keys and CSRs first: the clock measures the API and the operator, not the test's key generation.
    bodies = [
        pcr(
            ns,
            f"burst-{i:04d}",
            signer_name=signer.signer_name,
            key=pod_key("ECDSAP256"),
            service_account=f"sa-{i % 50}",
            node_name=f"node-{i % 20}",
            max_expiration_seconds=3600 * 2,
        )
        for i in range(BURST)
    ]
    sent: dict[str, float] = {}
    before = signer.operator.metrics()

    def create(body: dict[str, Any]) -> None:
        sent[body["metadata"]["name"]] = time.monotonic()
        requests.create(body)

    with AnswerWatch(requests, ns) as answers:
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(BURST_WORKERS) as pool:
            list(pool.map(create, bodies))
        created = time.monotonic()
        answered = answers.wait(sent.keys(), timeout=300)
        events = answers.events
    spent = signer.operator.metrics() - before
    finished = max(answers.answered[n][0] for n in sent)

    wrong = {n: _answer(o) for n, o in answered.items() if _answer(o)[0] != "Issued"}
    assert not wrong, f"{len(wrong)} not issued, e.g. {list(wrong.items())[:3]}"
    # Each answer is a real certificate for its own request.
    for body in bodies[:: BURST // 20]:
        obj = answered[body["metadata"]["name"]]
        leaf = x509.load_pem_x509_certificates(obj["status"]["certificateChain"].encode())[0]
        assert leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value == x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(_spiffe(ns, body["spec"]["serviceAccountName"]))]
        )
    refresh = {o["status"]["beginRefreshAt"] for o in answered.values()}

    latencies = sorted(answers.answered[n][0] - sent[n] for n in sent)
    p50 = statistics.quantiles(latencies, n=100)[49]
    p99 = statistics.quantiles(latencies, n=100)[98]
    wall = finished - started
    api_requests = {
        k: int(v) for k, v in sorted(spent.by("certmint_api_requests_total", "verb", "resource").items()) if v
    }
    print(
        f"\n{BURST} PodCertificateRequests ({BURST_WORKERS} concurrent creates): created in {created - started:.2f} s, "
        f"all Issued {wall:.2f} s after the first create: {BURST / wall:.0f} requests/s; create→Issued "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
        f"{len(refresh)} distinct beginRefreshAt; watch events seen {events}; "
        f"operator API requests: {api_requests} ({sum(api_requests.values())} in all)"
    )
    # One status write per answer.
    writes = sum(v for k, v in api_requests.items() if k.endswith("/podcertificaterequests/status"))
    assert writes == BURST, api_requests
    assert len(refresh) > BURST // 4  # jittered: the pods do not all refresh at once
