"""The CertificateRequest reconcile, for workloads that keep their key and send a CSR: judged by the issuer's policy,
then signed, denied or refused as invalid."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from certmint.kube import resources
from certmint.pki.csr import CertificateTemplate, build_csr
from certmint.pki.inspect import certificate_facts, load_pem_chain
from certmint.pki.keys import generate_private_key, public_key_matches
from tests.controller.conftest import CA_ISSUER, SELF_SIGNED
from tests.controller.harness import NAMESPACE, Harness, condition
from tests.integration.builders import API_VERSION, cluster_issuer
from tests.unit.builders import CAPair, cached_key


def csr(common_name: str | None = "worker.apps.svc", *dns_names: str) -> str:
    template = CertificateTemplate(common_name=common_name, dns_names=tuple(dns_names or ("worker.apps.svc",)))
    return build_csr(cached_key("ECDSA", 256), template).decode()


def two_common_names() -> str:
    """Well-formed, but a certificate has one subject CN: no policy can judge which one is meant."""
    key = cached_key("ECDSA", 256)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "a.apps.svc"), x509.NameAttribute(NameOID.COMMON_NAME, "b.apps.svc")]
    )
    built = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return built.public_bytes(Encoding.PEM).decode()


def request(name: str, pem: str, *, issuer_name: str = CA_ISSUER, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "CertificateRequest",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"request": pem, "issuerRef": {"name": issuer_name, "kind": "ClusterIssuer"}, "duration": "1h", **spec},
    }


async def submitted(harness: Harness, body: dict[str, Any]) -> dict[str, Any]:
    harness.create(body)
    await harness.settle()
    return harness.get("CertificateRequest", NAMESPACE, body["metadata"]["name"])


async def test_a_request_the_policy_allows_is_approved_and_signed_in_one_write(
    harness: Harness, root_ca: CAPair
) -> None:
    mark = harness.mark()
    obj = await submitted(harness, request("worker", csr("worker.apps.svc", "worker.apps.svc", "w.apps.svc")))
    assert harness.since(mark, reads=False) == {("patch", "certificaterequests/status"): 1}
    approved, ready = condition(obj, "Approved"), condition(obj, "Ready")
    assert (approved["status"], approved["reason"]) == ("True", "PolicyAllowed")
    assert (ready["status"], ready["reason"]) == ("True", "Issued")
    leaf = load_pem_chain(obj["status"]["certificate"].encode())[0]
    assert public_key_matches(cached_key("ECDSA", 256), leaf)
    facts = certificate_facts(leaf)
    assert (facts.common_name, set(facts.dns_names)) == ("worker.apps.svc", {"worker.apps.svc", "w.apps.svc"})
    assert facts.not_after - facts.not_before >= timedelta(hours=1)
    assert leaf.issuer == root_ca.cert.subject
    assert load_pem_chain(obj["status"]["ca"].encode()) == [root_ca.cert]
    # Signed once: nothing more happens to it, also after a restart.
    mark = harness.mark()
    await harness.restart()
    assert harness.since(mark, reads=False) == {}


def _denied(obj: dict[str, Any], reason: str) -> str:
    denied = condition(obj, "Denied")
    assert (denied.get("status"), denied.get("reason")) == ("True", reason), obj.get("status")
    assert (condition(obj, "Ready")["status"], condition(obj, "Ready")["reason"]) == ("False", "Denied")
    assert "certificate" not in obj["status"]
    return str(denied["message"])


async def test_a_request_the_policy_refuses_is_denied(harness: Harness) -> None:
    harness.create(
        cluster_issuer("strict", ca_secret="internal-ca-key-pair", policy={"allowedDNSNames": ["*.other.svc"]})
    )
    await harness.settle()
    obj = await submitted(harness, request("worker", csr(), issuer_name="strict"))
    assert "ClusterIssuer 'strict' refuses" in _denied(obj, "PolicyViolation")


async def test_an_unjudgeable_csr_is_denied_whatever_the_issuer(harness: Harness) -> None:
    obj = await submitted(harness, request("worker", two_common_names()))
    assert "more than one common name" in _denied(obj, "UnjudgeableRequest")


async def test_a_csr_without_any_identity_is_denied(harness: Harness) -> None:
    key = generate_private_key("ECDSA", 256)
    empty = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    pem = empty.public_bytes(Encoding.PEM).decode()
    obj = await submitted(harness, request("worker", pem))
    assert "asks for no identity" in _denied(obj, "UnjudgeableRequest")


@pytest.mark.parametrize(
    ("id_", "body", "reason"),
    [
        ("not a CSR", {"request": "hello"}, "InvalidSpec"),
        (
            "bad signature",
            {"request": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"},
            "InvalidCSR",
        ),
        ("usages unfit for the key", {"usages": ["key encipherment"]}, "InvalidUsages"),
        ("a CA without a subject", {"isCA": True, "request": None}, "EmptySubject"),
        ("selfSigned issuer", {"issuerRef": {"name": SELF_SIGNED, "kind": "ClusterIssuer"}}, "SelfSignedNeedsKey"),
    ],
)
async def test_an_invalid_request_says_why_and_is_not_retried(
    harness: Harness, id_: str, body: dict[str, Any], reason: str
) -> None:
    obj = request("worker", csr())
    if body.get("request", "") is None:
        body = {**body, "request": csr(None, "ca.apps.svc")}
    obj["spec"].update(body)
    got = await submitted(harness, obj)
    invalid = condition(got, "InvalidRequest")
    assert (invalid.get("status"), invalid.get("reason")) == ("True", reason), got.get("status")
    assert "certificate" not in got["status"] and got["status"]["failureTime"] == "2030-01-01T12:00:00Z"
    mark = harness.mark()
    await harness.advance(3600)
    assert harness.since(mark, reads=False) == {}


async def test_a_request_for_a_missing_issuer_waits_and_is_signed_when_the_issuer_appears(harness: Harness) -> None:
    obj = await submitted(harness, request("worker", csr(), issuer_name="later"))
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Pending")
    assert "'later' does not exist" in ready["message"]
    harness.create(cluster_issuer("later", ca_secret="internal-ca-key-pair"))
    await harness.settle()
    obj = harness.get("CertificateRequest", NAMESPACE, "worker")
    assert condition(obj, "Ready")["status"] == "True" and obj["status"]["certificate"]


async def test_a_certificates_own_request_is_left_to_the_certificate(harness: Harness) -> None:
    """Requests labelled with a Certificate's name are signed inline by its reconcile; kopf does not even watch
    them, so a pending one is not picked up here."""
    body = request("web-1", csr())
    body["metadata"]["labels"] = {resources.CERTIFICATE_NAME_LABEL: "web"}
    obj = await submitted(harness, body)
    assert "status" not in obj
