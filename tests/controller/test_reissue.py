"""Each reason to issue again (core.decisions.issuance_reason), and the repairs that need no new certificate.

A re-issue is seen as a new serial, revision 2, Ready=True/Issued and the reason in the Issuing
message and the Event; a repair as the same serial and revision, with only the Secret patched.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jks
import pytest
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
    pkcs12,
)

from certmint.core import decisions
from certmint.pki.inspect import load_pem_chain
from certmint.pki.keys import encode_private_key, generate_private_key, load_private_key, public_key_matches
from tests.controller.conftest import CA_ISSUER, CA_SECRET, SELF_SIGNED, running_harness
from tests.controller.harness import (
    NAMESPACE,
    OPERATOR_NAMESPACE,
    REISSUE_REQUESTS,
    Harness,
    ca_secret,
    condition,
    controller_settings,
)
from tests.integration.builders import certificate, cluster_issuer
from tests.unit.builders import CAPair, build_ca

SECRET = "web-tls"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class SpecChange:
    id: str
    patch: dict[str, Any]
    says: str  # in the Issuing condition's message and the Event
    issuer: str = CA_ISSUER  # the internal-ca's policy refuses CA certificates (allowCA false)


SPEC_CHANGES = [
    SpecChange("dnsNames", {"dnsNames": ["web.apps.svc", "api.apps.svc"]}, "dnsNames are [web.apps.svc]"),
    SpecChange("commonName", {"commonName": "api.apps.svc"}, 'commonName is "web.apps.svc", spec wants "api.apps.svc"'),
    SpecChange("ipAddresses", {"ipAddresses": ["10.0.0.7"]}, "ipAddresses are [], spec wants [10.0.0.7]"),
    SpecChange("uris", {"uris": ["spiffe://cluster.local/ns/apps/sa/web"]}, "uris are []"),
    SpecChange("emailAddresses", {"emailAddresses": ["web@example.com"]}, "emailAddresses are []"),
    SpecChange(
        "key size",
        {"privateKey": {"algorithm": "ECDSA", "size": 384}},
        "private key is ECDSA 256, spec wants ECDSA 384",
    ),
    SpecChange("key algorithm RSA", {"privateKey": {"algorithm": "RSA", "size": 2048}}, "spec wants RSA 2048"),
    SpecChange("key algorithm Ed25519", {"privateKey": {"algorithm": "Ed25519"}}, "spec wants Ed25519"),
    SpecChange("usages", {"usages": ["digital signature", "server auth"]}, "usages are ["),
    SpecChange("isCA", {"isCA": True}, "isCA is false, spec wants true", issuer=SELF_SIGNED),
    SpecChange("duration", {"duration": "48h"}, "lifetime is 24h1m, spec.duration is 48h"),
    SpecChange("subject", {"subject": {"organizations": ["Example"]}}, "subject attributes"),
    SpecChange(
        "issuerRef", {"issuerRef": {"name": SELF_SIGNED, "kind": "ClusterIssuer"}}, "was issued by ClusterIssuer"
    ),
]


@pytest.mark.parametrize("change", SPEC_CHANGES, ids=[c.id for c in SPEC_CHANGES])
async def test_a_spec_change_that_the_certificate_does_not_match_reissues(harness: Harness, change: SpecChange) -> None:
    first = await harness.issued("web", issuer=change.issuer)
    mark = harness.mark()
    harness.patch("Certificate", NAMESPACE, "web", {"spec": change.patch})
    await harness.settle()

    assert harness.since(mark, reads=False) == REISSUE_REQUESTS
    cert = harness.certificate("web")
    status = cert["status"]
    assert status["revision"] == 2 and status["serialNumber"] != first["serialNumber"]
    assert status["observedGeneration"] == 2
    assert (condition(cert, "Ready")["status"], condition(cert, "Ready")["reason"]) == ("True", "Issued")
    assert change.says in condition(cert, "Issuing")["message"]
    assert harness.event_reasons("web") == ["Issued", "Issued"]
    assert change.says in harness.events("web")[-1]["message"]
    data = harness.secret_data(SECRET)
    assert public_key_matches(load_private_key(data["tls.key"]), load_pem_chain(data["tls.crt"])[0])


async def test_additional_output_formats_follow_tls_key_and_tls_crt(harness: Harness) -> None:
    """cert-manager's additionalOutputFormats: tls-combined.pem and key.der are written with the key pair, a format
    added or removed re-issues, and a removed format's key leaves the Secret."""
    formats = [{"type": "CombinedPEM"}, {"type": "DER"}]
    await harness.issued("web", issuer=CA_ISSUER, additionalOutputFormats=formats)
    data = harness.secret_data(SECRET)
    assert data["tls-combined.pem"] == data["tls.key"] + data["tls.crt"]
    key = load_der_private_key(data["key.der"], password=None)
    assert public_key_matches(key, load_pem_chain(data["tls.crt"])[0])

    harness.patch("Certificate", NAMESPACE, "web", {"spec": {"additionalOutputFormats": [{"type": "CombinedPEM"}]}})
    await harness.settle()
    cert = harness.certificate("web")
    assert cert["status"]["revision"] == 2
    assert "key.der, which spec.additionalOutputFormats does not ask for" in condition(cert, "Issuing")["message"]
    data = harness.secret_data(SECRET)
    assert "key.der" not in data
    assert data["tls-combined.pem"] == data["tls.key"] + data["tls.crt"]

    # A person's edit of a derived key is repaired by a re-issue, like any Secret that does not match its spec.
    secret = harness.secret(SECRET)
    assert secret is not None
    harness.patch("Secret", NAMESPACE, SECRET, {"data": {"tls-combined.pem": b64(b"edited")}})
    await harness.settle()
    assert harness.certificate("web")["status"]["revision"] == 3
    data = harness.secret_data(SECRET)
    assert data["tls-combined.pem"] == data["tls.key"] + data["tls.crt"]


async def test_a_spec_change_the_certificate_already_satisfies_reissues_nothing(harness: Harness) -> None:
    first = await harness.issued("web", issuer=CA_ISSUER)
    mark = harness.mark()
    # The same names in another order and case, and the default key written out: the certificate still matches.
    harness.patch(
        "Certificate",
        NAMESPACE,
        "web",
        {"spec": {"dnsNames": ["WEB.apps.svc"], "privateKey": {"algorithm": "ECDSA", "size": 256}}},
    )
    await harness.settle()
    assert harness.since(mark, reads=False) == {("patch", "certificates/status"): 1}  # observedGeneration
    status = harness.certificate("web")["status"]
    assert (status["serialNumber"], status["revision"], status["observedGeneration"]) == (first["serialNumber"], 1, 2)


def _replace_key(data: dict[str, bytes]) -> dict[str, Any]:
    other = encode_private_key(generate_private_key("ECDSA", 256), "PKCS8")
    return {"data": {"tls.key": b64(other)}}


@dataclass(frozen=True)
class SecretChange:
    id: str
    patch: Callable[[dict[str, bytes]], dict[str, Any] | None]  # None: delete the Secret
    says: str


SECRET_CHANGES = [
    SecretChange("deleted", lambda data: None, "Secret web-tls does not exist"),
    SecretChange("tls.key removed", lambda data: {"data": {"tls.key": None}}, "is missing tls.key"),
    SecretChange("tls.crt removed", lambda data: {"data": {"tls.crt": None}}, "is missing tls.crt"),
    SecretChange("another key", _replace_key, "tls.key is not the private key of the certificate"),
    SecretChange("garbage tls.crt", lambda data: {"data": {"tls.crt": b64(b"not a PEM")}}, "unusable tls.crt"),
    SecretChange("garbage tls.key", lambda data: {"data": {"tls.key": b64(b"not a PEM")}}, "unusable tls.key"),
]


@pytest.mark.parametrize("change", SECRET_CHANGES, ids=[c.id for c in SECRET_CHANGES])
async def test_a_secret_that_no_longer_holds_a_good_key_pair_is_reissued(
    harness: Harness, change: SecretChange
) -> None:
    first = await harness.issued("web", issuer=CA_ISSUER)
    patch = change.patch(harness.secret_data(SECRET))
    if patch is None:
        harness.delete("Secret", NAMESPACE, SECRET)
    else:
        harness.patch("Secret", NAMESPACE, SECRET, patch)
    await harness.settle()

    cert = harness.certificate("web")
    assert cert["status"]["revision"] == 2 and cert["status"]["serialNumber"] != first["serialNumber"]
    assert change.says in condition(cert, "Issuing")["message"]
    assert condition(cert, "Ready")["status"] == "True"
    data = harness.secret_data(SECRET)
    assert public_key_matches(load_private_key(data["tls.key"]), load_pem_chain(data["tls.crt"])[0])


async def test_rotation_policy_never_reissues_with_the_same_key(harness: Harness) -> None:
    await harness.issued("web", issuer=CA_ISSUER, privateKey={"rotationPolicy": "Never"})
    key = harness.secret_data(SECRET)["tls.key"]
    harness.patch("Certificate", NAMESPACE, "web", {"spec": {"dnsNames": ["api.apps.svc"]}})
    await harness.settle()
    assert harness.certificate("web")["status"]["revision"] == 2
    assert harness.secret_data(SECRET)["tls.key"] == key


async def test_ca_replaced_reissues_every_certificate_of_the_issuer(root_ca: CAPair) -> None:
    """With no propagation delay, a CA Secret given a CA under a new root is signed under at once (with one, the
    issuer first announces the new root: test_trust_anchors)."""
    async with running_harness(root_ca, controller_settings(trust_propagation_seconds=0)) as harness:
        await _reissued_under_the_replacement(harness)


async def _reissued_under_the_replacement(harness: Harness) -> None:
    first = await harness.issued("web", issuer=CA_ISSUER)
    other = await harness.issued("other", issuer=SELF_SIGNED)
    new_ca = build_ca("Replacement Root CA")
    harness.patch(
        "Secret",
        OPERATOR_NAMESPACE,
        CA_SECRET,
        {"data": {"tls.crt": b64(new_ca.cert_pem), "tls.key": b64(new_ca.key_pem)}},
    )
    await harness.settle()
    # The CA Secret is a person's (not labelled): the issuer sees the change at its next re-check.
    assert harness.certificate("web")["status"]["revision"] == 1
    await harness.advance(harness.settings.issuer_recheck_seconds)

    cert = harness.certificate("web")
    assert cert["status"]["revision"] == 2 and cert["status"]["serialNumber"] != first["serialNumber"]
    assert "but the issuer's CA key is now" in condition(cert, "Issuing")["message"]
    data = harness.secret_data(SECRET)
    assert load_pem_chain(data["tls.crt"])[0].issuer == new_ca.cert.subject
    assert load_pem_chain(data["ca.crt"]) == [new_ca.cert]
    assert harness.certificate("other")["status"]["serialNumber"] == other["serialNumber"]  # another issuer's


# -- repairs: the certificate stays, the Secret is put right ---------------------------------------------------


async def test_a_removed_annotation_is_restored_without_reissuing(harness: Harness) -> None:
    first = await harness.issued("web", issuer=CA_ISSUER)
    harness.patch("Secret", NAMESPACE, SECRET, {"metadata": {"annotations": {decisions.SERIAL_NUMBER: None}}})
    mark = harness.mark()
    await harness.settle()
    # The repaired Secret has a new resourceVersion, which status.verified records (a restart then reads nothing).
    assert harness.since(mark, reads=False) == {("patch", "secrets"): 1, ("patch", "certificates/status"): 1}
    meta = (harness.secret(SECRET) or {})["metadata"]
    assert meta["annotations"][decisions.SERIAL_NUMBER] == first["serialNumber"]
    status = harness.certificate("web")["status"]
    assert status["verified"]["secretResourceVersion"] == meta["resourceVersion"]
    assert {**status, "verified": None} == {**first, "verified": None}
    assert harness.event_reasons("web") == ["Issued"]


async def test_a_removed_label_is_restored_without_reissuing(harness: Harness) -> None:
    """The label is what the Secret watch selects on: without it the watch reports the Secret as deleted."""
    first = await harness.issued("web", issuer=CA_ISSUER)
    harness.patch("Secret", NAMESPACE, SECRET, {"metadata": {"labels": {decisions.CERTIFICATE_NAME: None}}})
    await harness.settle()
    meta = (harness.secret(SECRET) or {})["metadata"]
    assert meta["labels"][decisions.CERTIFICATE_NAME] == "web"
    status = harness.certificate("web")["status"]
    assert (status["serialNumber"], status["revision"]) == (first["serialNumber"], 1)


async def test_a_removed_label_signs_nothing(harness: Harness) -> None:
    await harness.issued("web", issuer=CA_ISSUER)
    harness.patch("Secret", NAMESPACE, SECRET, {"metadata": {"labels": {decisions.CERTIFICATE_NAME: None}}})
    mark = harness.mark()
    await harness.settle()
    assert [r["metadata"]["name"] for r in harness.requests()] == ["web-1"]
    # The repaired Secret has a new resourceVersion, which status.verified records (a restart then reads nothing).
    assert harness.since(mark, reads=False) == {("patch", "secrets"): 1, ("patch", "certificates/status"): 1}


async def test_other_peoples_labels_and_annotations_on_the_secret_are_left_alone(harness: Harness) -> None:
    await harness.issued("web", issuer=CA_ISSUER)
    harness.patch(
        "Secret",
        NAMESPACE,
        SECRET,
        {"metadata": {"labels": {"backup": "yes"}, "annotations": {decisions.ISSUER_NAME: "x", "reloader": "1"}}},
    )
    await harness.settle()
    meta = (harness.secret(SECRET) or {})["metadata"]
    assert meta["labels"]["backup"] == "yes" and meta["annotations"]["reloader"] == "1"
    assert meta["annotations"][decisions.ISSUER_NAME] == CA_ISSUER  # certmint's own key, put back


async def test_a_secret_template_change_relabels_without_reissuing(harness: Harness) -> None:
    first = await harness.issued("web", issuer=CA_ISSUER)
    harness.patch("Certificate", NAMESPACE, "web", {"spec": {"secretTemplate": {"labels": {"team": "b"}}}})
    await harness.settle()
    assert (harness.secret(SECRET) or {})["metadata"]["labels"]["team"] == "b"
    assert harness.certificate("web")["status"]["serialNumber"] == first["serialNumber"]


async def test_ca_crt_follows_the_issuers_trust_anchor_without_reissuing(harness: Harness, root_ca: CAPair) -> None:
    """An intermediate CA Secret first without its root, then with the root added as ca.crt."""
    intermediate = build_ca("Controller Tier Intermediate CA", parent=root_ca)
    harness.create(ca_secret("intermediate-key-pair", OPERATOR_NAMESPACE, intermediate))
    harness.create(cluster_issuer("intermediate", ca_secret="intermediate-key-pair"))
    await harness.settle()
    first = await harness.issued("web", issuer="intermediate")
    assert load_pem_chain(harness.secret_data(SECRET)["ca.crt"]) == [intermediate.cert]

    harness.patch("Secret", OPERATOR_NAMESPACE, "intermediate-key-pair", {"data": {"ca.crt": b64(root_ca.cert_pem)}})
    await harness.advance(harness.settings.issuer_recheck_seconds)

    issuer = harness.get("ClusterIssuer", None, "intermediate")
    assert issuer["status"]["trustAnchor"]["subject"] == root_ca.cert.subject.rfc4514_string()
    assert load_pem_chain(harness.secret_data(SECRET)["ca.crt"]) == [root_ca.cert]
    status = harness.certificate("web")["status"]
    assert (status["serialNumber"], status["revision"]) == (first["serialNumber"], 1)


async def test_a_removed_ca_crt_is_restored_without_reissuing(harness: Harness, root_ca: CAPair) -> None:
    first = await harness.issued("web", issuer=CA_ISSUER)
    harness.patch("Secret", NAMESPACE, SECRET, {"data": {"ca.crt": None}})
    await harness.settle()
    assert load_pem_chain(harness.secret_data(SECRET)["ca.crt"]) == [root_ca.cert]
    assert harness.certificate("web")["status"]["serialNumber"] == first["serialNumber"]


async def test_the_renewal_time_comes_from_the_certificate_not_from_an_edited_status(harness: Harness) -> None:
    first = await harness.issued("web", issuer=CA_ISSUER)
    harness.api.edit(
        "/apis/certmint.dev/v1alpha1/namespaces/apps/certificates/web",
        {"status": {"renewalTime": "2030-01-01T12:05:00Z"}},
        subresource="status",
    )
    await harness.restart()
    assert harness.certificate("web")["status"]["renewalTime"] == first["renewalTime"]
    await harness.advance(600)
    status = harness.certificate("web")["status"]
    assert (status["serialNumber"], status["revision"]) == (first["serialNumber"], 1)


async def test_a_renew_request_annotation_reissues_once(harness: Harness) -> None:
    """certmint.dev/renew-request: a new value asks for one re-issue, the spec untouched; a restart or an unrelated
    change does not honour the same value twice; another value asks again."""
    first = await harness.issued("web", issuer=CA_ISSUER)
    request = {"metadata": {"annotations": {decisions.RENEW_REQUEST: "2030-01-01T12:00:00Z"}}}
    harness.patch("Certificate", NAMESPACE, "web", request)
    await harness.settle()
    cert = harness.certificate("web")
    assert cert["status"]["revision"] == 2 and cert["status"]["serialNumber"] != first["serialNumber"]
    assert cert["status"]["lastRenewRequest"] == "2030-01-01T12:00:00Z"
    assert cert["metadata"]["generation"] == 1  # the spec was not touched
    assert decisions.RENEW_REQUEST in condition(cert, "Issuing")["message"]

    await harness.restart()
    harness.patch("Certificate", NAMESPACE, "web", {"metadata": {"labels": {"team": "a"}}})
    await harness.settle()
    assert harness.certificate("web")["status"]["revision"] == 2  # honoured once

    harness.patch("Certificate", NAMESPACE, "web", {"metadata": {"annotations": {decisions.RENEW_REQUEST: "again"}}})
    await harness.settle()
    assert harness.certificate("web")["status"]["revision"] == 3


async def test_keystores_are_written_with_the_password_and_rewritten_at_renewal(harness: Harness) -> None:
    """cert-manager's keystores: nothing is issued while the password Secret is missing (a reason that names it);
    then keystore.p12 and keystore.jks hold the key and chain, and a re-issue rewrites both for the new key."""
    ref = {"name": "web-keystore", "key": "password"}
    keystores = {
        "pkcs12": {"create": True, "passwordSecretRef": ref},
        "jks": {"create": True, "passwordSecretRef": ref},
    }
    harness.create(certificate("web", NAMESPACE, issuer_name=CA_ISSUER, duration="24h", keystores=keystores))
    await harness.settle()
    ready = condition(harness.certificate("web"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "KeystorePasswordUnavailable")
    assert f"Secret {NAMESPACE}/web-keystore does not exist" in ready["message"]
    assert harness.secret(SECRET) is None

    password = "correct horse"
    harness.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "web-keystore", "namespace": NAMESPACE},
            "data": {"password": b64(password.encode())},
        }
    )
    await harness.advance(60)  # the retry (30 s after the first attempt); the password Secret is not watched
    assert condition(harness.certificate("web"), "Ready")["status"] == "True"
    first = harness.secret_data(SECRET)
    key = load_private_key(first["tls.key"])
    p12 = pkcs12.load_pkcs12(first["keystore.p12"], password.encode())
    assert p12.key is not None and p12.key.public_key() == key.public_key()  # type: ignore[comparison-overlap]
    store = jks.KeyStore.loads(first["keystore.jks"], password)
    assert store.private_keys["certificate"].pkey_pkcs8 == key.private_bytes(
        Encoding.DER, PrivateFormat.PKCS8, NoEncryption()
    )

    harness.patch("Certificate", NAMESPACE, "web", {"metadata": {"annotations": {decisions.RENEW_REQUEST: "1"}}})
    await harness.settle()
    second = harness.secret_data(SECRET)
    assert second["tls.key"] != first["tls.key"]
    renewed = pkcs12.load_pkcs12(second["keystore.p12"], password.encode())
    assert renewed.key is not None
    assert renewed.key.public_key() == load_private_key(second["tls.key"]).public_key()  # type: ignore[comparison-overlap]
    jks_chain = jks.KeyStore.loads(second["keystore.jks"], password).private_keys["certificate"].cert_chain
    assert jks_chain[0][1] == load_pem_chain(second["tls.crt"])[0].public_bytes(Encoding.DER)
