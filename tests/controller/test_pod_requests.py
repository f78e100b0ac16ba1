"""PodCertificateRequests in the fast tier: what the reconciler answers, once, and when it waits.

The integration tier (tests/integration/test_pod_certificates.py) does the same against a real API server, which
also enforces the API's own rules on the answer; here the fake API keeps what certmint wrote, so the tests look at
the exact status and at how many writes it took.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import time
from typing import Any

import kopf
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from certmint.core.conditions import parse_rfc3339
from certmint.handlers import _alive
from certmint.kube import resources
from certmint.kube.client import ApiUnavailable
from certmint.pki.inspect import load_pem_chain
from certmint.pki.keys import generate_private_key
from tests.controller.conftest import CA_SECRET, running_harness
from tests.controller.harness import Harness, controller_settings
from tests.integration.builders import cluster_issuer
from tests.unit.builders import CAPair

MESH = "mesh"
SIGNER = f"certmint.dev/{MESH}"


def pod_request(name: str, namespace: str, *, signer: str = SIGNER, service_account: str = "web") -> dict[str, Any]:
    """A PodCertificateRequest as a kubelet makes it: an empty CSR signed by the pod's key (stubPKCS10Request)."""
    key = generate_private_key("ECDSA", 256)
    stub = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    return {
        "apiVersion": "certificates.k8s.io/v1beta1",
        "kind": "PodCertificateRequest",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
        "spec": {
            "signerName": signer,
            "podName": f"{name}-pod",
            "podUID": "pod-uid",
            "serviceAccountName": service_account,
            "serviceAccountUID": "sa-uid",
            "nodeName": "node-1",
            "nodeUID": "node-uid",
            "maxExpirationSeconds": 86400,
            "stubPKCS10Request": base64.b64encode(stub.public_bytes(Encoding.DER)).decode(),
        },
    }


def submit(harness: Harness, obj: dict[str, Any]) -> None:
    """The kubelet creates it; the operator's watch delivers it."""
    meta = obj["metadata"]
    stored = harness.api.put(resources.pod_certificate_requests_path(meta["namespace"]), obj)
    harness.op.observe_pod_request("ADDED", stored)


def answered(harness: Harness, namespace: str, name: str) -> dict[str, Any]:
    obj = harness.api.peek(resources.pod_certificate_requests_path(namespace, name))
    assert obj is not None
    return dict(obj.get("status") or {})


async def mesh(harness: Harness, **pods: Any) -> None:
    issuer = cluster_issuer(MESH, ca_secret=CA_SECRET, policy={"allowedNamespaces": ["apps"]})
    issuer["spec"]["podCertificates"] = {"signerName": SIGNER, "trustDomain": "cluster.local", **pods}
    harness.create(issuer)
    await harness.settle()


async def test_a_pod_gets_a_certificate_of_its_attested_identity_in_one_write(root_ca: CAPair) -> None:
    async with running_harness(root_ca, controller_settings(pod_certificates=True)) as harness:
        await mesh(harness)
        mark = harness.mark()
        submit(harness, pod_request("req-1", "apps"))
        await harness.settle()
        assert harness.since(mark, reads=False) == {("patch", "podcertificaterequests/status"): 1}
        status = answered(harness, "apps", "req-1")
        [issued] = status["conditions"]
        assert (issued["type"], issued["status"], issued["reason"]) == ("Issued", "True", "Issued")
        chain = load_pem_chain(status["certificateChain"].encode())
        leaf = chain[0]
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(n.value) for n in sans] == ["spiffe://cluster.local/ns/apps/sa/web"]
        assert leaf.issuer == root_ca.cert.subject and len(leaf.subject) == 0
        not_before, not_after = parse_rfc3339(status["notBefore"]), parse_rfc3339(status["notAfter"])
        refresh = parse_rfc3339(status["beginRefreshAt"])
        assert (not_before, not_after) == (leaf.not_valid_before_utc, leaf.not_valid_after_utc)
        assert not_after - not_before == datetime.timedelta(seconds=86400)
        assert not_before + datetime.timedelta(minutes=10) <= refresh <= not_after - datetime.timedelta(minutes=10)
        # The watch delivers the request again as it was before the answer: not answered twice.
        harness.op.observe_pod_request("MODIFIED", pod_request("req-1", "apps") | {"metadata": _older(harness)})
        await harness.settle()
        assert harness.since(mark, reads=False) == {("patch", "podcertificaterequests/status"): 1}


def _older(harness: Harness) -> dict[str, Any]:
    obj = harness.api.peek(resources.pod_certificate_requests_path("apps", "req-1"))
    assert obj is not None
    meta = dict(obj["metadata"])
    meta["resourceVersion"] = str(int(meta["resourceVersion"]) - 1)
    return meta


async def test_refusals_are_final_and_say_why(root_ca: CAPair) -> None:
    async with running_harness(root_ca, controller_settings(pod_certificates=True)) as harness:
        await mesh(harness, allowedServiceAccounts=["apps/web"])
        submit(harness, pod_request("wrong-ns", "other"))
        submit(harness, pod_request("wrong-sa", "apps", service_account="batch"))
        submit(harness, pod_request("not-ours", "apps", signer="other.example/x"))
        await harness.settle()
        [denied] = answered(harness, "other", "wrong-ns")["conditions"]
        assert (denied["type"], denied["reason"]) == ("Denied", "NamespaceNotAllowed")
        assert 'namespace "other" may not use signer certmint.dev/mesh' in denied["message"]
        [denied] = answered(harness, "apps", "wrong-sa")["conditions"]
        assert (denied["type"], denied["reason"]) == ("Denied", "ServiceAccountNotAllowed")
        assert "apps/batch" in denied["message"]
        assert answered(harness, "apps", "not-ours") == {}  # another signer's: not ours to answer


async def test_a_request_waits_while_its_issuer_cannot_sign(root_ca: CAPair) -> None:
    async with running_harness(root_ca, controller_settings(pod_certificates=True)) as harness:
        submit(harness, pod_request("early", "apps"))  # before any issuer enables the signer
        await harness.settle()
        assert answered(harness, "apps", "early") == {}
        await mesh(harness)  # the issuer's check wakes its requests
        [issued] = answered(harness, "apps", "early")["conditions"]
        assert issued["type"] == "Issued"


async def test_the_pod_request_watch_starts_after_an_api_server_out_of_reach_at_startup(root_ca: CAPair) -> None:
    """On a new kind cluster (2026-11-30) the operator started before CoreDNS answered for kubernetes.default.svc:
    the watch's first read, discovery, failed, the watch task ended, and no pod certificate was signed until the
    operator restarted. It must retry discovery as the watch retries everything else."""
    async with running_harness(root_ca, controller_settings(pod_certificates=True)) as harness:
        await mesh(harness)
        harness.api.put(resources.pod_certificate_requests_path("apps"), pod_request("req-1", "apps"))
        outage = harness.api.fail("get", "discovery", unavailable=True, message="Temporary failure in name resolution")
        watch = asyncio.create_task(harness.op.watch_pod_requests())
        try:
            deadline = time.monotonic() + 20  # the retry waits its first back-off (0.5 s) in real time
            while not answered(harness, "apps", "req-1") and time.monotonic() < deadline:
                assert not watch.done(), watch.exception() if not watch.cancelled() else "cancelled"
                await harness.settle()
                await asyncio.sleep(0.05)
            assert outage.times == 0  # the watch's discovery met the outage, and was retried
            assert [c["type"] for c in answered(harness, "apps", "req-1")["conditions"]] == ["Issued"]
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch


async def test_liveness_fails_once_the_pod_request_watch_has_ended_with_an_error(root_ca: CAPair) -> None:
    """A watch task that died would sign nothing, silently: the kubelet restarts an operator that reports it. A
    watch that returned (the API server does not serve PodCertificateRequests) is not a failure."""

    async def not_served() -> None:
        return None

    async def failed() -> None:
        raise ApiUnavailable("API server unreachable: OSError: Temporary failure in name resolution")

    async with running_harness(root_ca, controller_settings(pod_certificates=True)) as harness:
        memo = kopf.Memo()
        memo.pod_requests_task = asyncio.create_task(not_served())
        await memo.pod_requests_task
        assert _alive(harness.op, memo)
        memo.pod_requests_task = asyncio.create_task(failed())
        with contextlib.suppress(ApiUnavailable):
            await memo.pod_requests_task
        assert not _alive(harness.op, memo)
