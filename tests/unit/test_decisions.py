"""The issuance decision chain, Secret metadata and spec-to-request mapping, on real certificates."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from certmint.core.decisions import (
    IssuerIdentity,
    Ownership,
    Reason,
    SecretSnapshot,
    certificate_label_value,
    certificate_template,
    desired_secret_metadata,
    issuance_reason,
    metadata_drift,
    requested_identity,
    secret_ownership,
    stored_revision,
)
from certmint.core.spec import CertificateSpec
from certmint.pki.csr import build_csr, parse_csr
from certmint.pki.inspect import CertificateFacts, certificate_facts
from certmint.pki.keys import PrivateKey, encode_private_key, generate_private_key
from certmint.pki.signing import IssuedCertificate, SigningAuthority, SigningRequest, self_sign
from tests.unit.builders import NOW, build_ca, certificate_spec, issue_for

SPEC = certificate_spec()  # web-tls, ClusterIssuer internal-ca, CN + 2 DNS names, 24h, ECDSA P-256


@pytest.fixture(scope="module")
def issued(authority: SigningAuthority) -> tuple[IssuedCertificate, PrivateKey]:
    return issue_for(SPEC, authority)


def _metadata(spec: CertificateSpec, facts: CertificateFacts | None) -> tuple[dict[str, str], dict[str, str]]:
    """desired_secret_metadata for Certificate "web" (uid-web) of ClusterIssuer internal-ca."""
    return desired_secret_metadata(
        spec,
        certificate_name="web",
        certificate_uid="uid-web",
        issuer_name="internal-ca",
        issuer_kind="ClusterIssuer",
        facts=facts,
    )


@pytest.fixture
def good(issued: tuple[IssuedCertificate, PrivateKey]) -> SecretSnapshot:
    certificate, key = issued
    labels, annotations = _metadata(SPEC, certificate_facts(certificate.certificate))
    return SecretSnapshot(
        exists=True,
        certificate_pem=certificate.chain_pem,
        key_pem=encode_private_key(key, "PKCS1"),
        labels=labels,
        annotations=annotations,
        namespace="default",
    )


@pytest.fixture
def ca_identity(authority: SigningAuthority) -> IssuerIdentity:
    return IssuerIdentity(self_signed=False, subject_key_id=authority.subject_key_id, not_after=authority.not_after)


def _reason(
    secret: SecretSnapshot,
    issuer: IssuerIdentity | None,
    spec: CertificateSpec = SPEC,
    *,
    now: Any = NOW,
    renewal_time: Any = NOW + timedelta(hours=16),
) -> Reason | None:
    return issuance_reason(spec, secret, issuer, now=now, renewal_time=renewal_time)


def test_good_secret_needs_nothing(good: SecretSnapshot, ca_identity: IssuerIdentity) -> None:
    assert _reason(good, ca_identity) is None
    assert _reason(good, None, renewal_time=None) is None


def test_missing_secret(good: SecretSnapshot, ca_identity: IssuerIdentity) -> None:
    reason = _reason(replace(good, exists=False), ca_identity)
    assert reason == Reason("DoesNotExist", "Secret default/web-tls does not exist")


def test_missing_data(good: SecretSnapshot, ca_identity: IssuerIdentity) -> None:
    assert _reason(replace(good, key_pem=None), ca_identity) == Reason(
        "MissingData", "Secret default/web-tls is missing tls.key"
    )
    assert _reason(replace(good, certificate_pem=b"", key_pem=None), ca_identity) == Reason(
        "MissingData", "Secret default/web-tls is missing tls.crt and tls.key"
    )
    # Without a namespace the message still names the Secret.
    assert _reason(replace(good, certificate_pem=None, namespace=""), ca_identity) == Reason(
        "MissingData", "Secret web-tls is missing tls.crt"
    )


def test_unparseable_key(good: SecretSnapshot, ca_identity: IssuerIdentity) -> None:
    broken_key = b"-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----"
    reason = _reason(replace(good, key_pem=broken_key), ca_identity)
    assert reason is not None and reason.code == "InvalidKeyPair"
    assert reason.message.startswith("Secret default/web-tls has an unusable tls.key")


def test_unparseable_certificate(good: SecretSnapshot, ca_identity: IssuerIdentity) -> None:
    reason = _reason(replace(good, certificate_pem=b"-----BEGIN CERTIFICATE-----\nAA==\n"), ca_identity)
    assert reason is not None and reason.code == "InvalidCertificate"
    assert reason.message.startswith("Secret default/web-tls has an unusable tls.crt")


def test_key_that_does_not_match_the_certificate(good: SecretSnapshot, ca_identity: IssuerIdentity) -> None:
    other = encode_private_key(generate_private_key("ECDSA", 256), "PKCS1")
    reason = _reason(replace(good, key_pem=other), ca_identity)
    assert reason == Reason(
        "InvalidKeyPair",
        "Secret default/web-tls: tls.key is not the private key of the certificate in tls.crt",
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"commonName": "api.default.svc"}, 'commonName is "web.default.svc", spec wants "api.default.svc"'),
        ({"commonName": None}, 'commonName is "web.default.svc", spec wants unset'),
        (
            {"dnsNames": ["web.default.svc"]},
            "dnsNames are [web.default.svc, web.default.svc.cluster.local], spec wants [web.default.svc]",
        ),
        ({"ipAddresses": ["10.0.0.1"]}, "ipAddresses are [], spec wants [10.0.0.1]"),
        ({"uris": ["spiffe://td/web"]}, "uris are [], spec wants [spiffe://td/web]"),
        ({"emailAddresses": ["a@b.c"]}, "emailAddresses are [], spec wants [a@b.c]"),
        (
            {"usages": ["server auth"]},
            "usages are [client auth, digital signature, server auth]",  # the ECDSA default: no key encipherment
        ),
        ({"isCA": True}, "isCA is false, spec wants true"),
        (
            {"privateKey": {"algorithm": "ECDSA", "size": 384}},
            "private key is ECDSA 256, spec wants ECDSA 384",
        ),
        ({"privateKey": {"algorithm": "Ed25519"}}, "private key is ECDSA 256, spec wants Ed25519"),
        ({"subject": {"organizations": ["Example"]}}, "subject attributes"),
        ({"duration": "1h"}, "lifetime is 24h1m, spec.duration is 1h"),
        ({"duration": "48h"}, "lifetime is 24h1m, spec.duration is 48h"),
    ],
)
def test_certificate_no_longer_matching_the_spec(
    good: SecretSnapshot, ca_identity: IssuerIdentity, changes: dict[str, Any], expected: str
) -> None:
    spec = certificate_spec(**changes)
    reason = _reason(good, ca_identity, spec)
    assert reason is not None and reason.code == "SpecChanged"
    assert reason.message.startswith("the certificate in Secret default/web-tls does not match the spec: ")
    assert expected in reason.message


def test_equivalent_spec_spellings_are_not_changes(good: SecretSnapshot, ca_identity: IssuerIdentity) -> None:
    same = certificate_spec(
        dnsNames=["WEB.default.svc.cluster.local", "web.default.svc"],  # order and case
        usages=["signing", "client auth", "server auth"],  # alias, order (the ECDSA default)
        privateKey={"encoding": "PKCS8", "rotationPolicy": "Never"},  # not visible in the certificate
        secretTemplate={"labels": {"a": "b"}},  # metadata only
        renewBefore="2h",  # renewal only
    )
    assert _reason(good, ca_identity, same) is None


def test_certificate_truncated_by_the_ca_is_not_a_spec_change(make_ca: Any) -> None:
    short_ca = make_ca("Short CA", not_after=NOW + timedelta(hours=10))
    authority = SigningAuthority.from_pem(short_ca.cert_pem, short_ca.key_pem, now=NOW)
    certificate, key = issue_for(SPEC, authority)
    assert certificate.not_after == authority.not_after
    secret = SecretSnapshot(True, certificate.chain_pem, encode_private_key(key, "PKCS8"), {}, {})
    identity = IssuerIdentity(False, authority.subject_key_id, not_after=authority.not_after)
    assert _reason(secret, identity, renewal_time=None) is None
    # Once the CA is renewed (same key, later expiry) the short certificate is re-issued at full length.
    renewed = replace(identity, not_after=NOW + timedelta(days=365))
    reason = _reason(secret, renewed, renewal_time=None)
    assert reason is not None and reason.code == "SpecChanged" and "lifetime is 10h" in reason.message


def test_certificate_from_another_ca_key(good: SecretSnapshot, authority: SigningAuthority) -> None:
    other_ca = build_ca("Test Root CA")  # same name, different key
    other = SigningAuthority.from_pem(other_ca.cert_pem, other_ca.key_pem, now=NOW)
    other_identity = IssuerIdentity(self_signed=False, subject_key_id=other.subject_key_id)
    reason = _reason(good, other_identity)
    assert reason is not None and reason.code == "IncorrectIssuer"
    assert f"was signed by CA key {authority.subject_key_id}" in reason.message
    # Unknown issuer state (e.g. not ready): no verdict on the CA.
    assert _reason(good, None) is None


def test_issuer_ref_changed(good: SecretSnapshot, ca_identity: IssuerIdentity) -> None:
    spec = certificate_spec(issuerRef={"name": "other-ca", "kind": "Issuer"})
    reason = _reason(good, ca_identity, spec)
    assert reason == Reason(
        "IncorrectIssuer",
        'the certificate in Secret default/web-tls was issued by ClusterIssuer "internal-ca", '
        'spec.issuerRef is Issuer "other-ca"',
    )


def test_ca_signed_certificate_under_a_self_signed_issuer(good: SecretSnapshot) -> None:
    reason = _reason(good, IssuerIdentity(self_signed=True, subject_key_id=None))
    assert reason is not None and reason.code == "IncorrectIssuer"
    assert "the issuer is selfSigned" in reason.message


def _self_signed_secret(spec: CertificateSpec) -> SecretSnapshot:
    key = generate_private_key("ECDSA", 256)
    csr = parse_csr(build_csr(key, certificate_template(spec)))
    issued = self_sign(SigningRequest(csr, spec.duration, spec.usages, spec.is_ca), key, now=NOW)
    return SecretSnapshot(True, issued.chain_pem, encode_private_key(key, "PKCS1"), {}, {}, "default")


def test_self_signed_certificate_under_its_self_signed_issuer_is_good() -> None:
    secret = _self_signed_secret(SPEC)
    assert _reason(secret, IssuerIdentity(self_signed=True, subject_key_id=None)) is None


def test_self_signed_certificate_under_a_ca_issuer(ca_identity: IssuerIdentity) -> None:
    reason = _reason(_self_signed_secret(SPEC), ca_identity)
    assert reason is not None and reason.code == "IncorrectIssuer"


def test_expired(good: SecretSnapshot, ca_identity: IssuerIdentity, issued: Any) -> None:
    not_after = issued[0].not_after
    reason = _reason(good, ca_identity, now=not_after, renewal_time=None)
    assert reason == Reason("Expired", "the certificate in Secret default/web-tls expired at 2030-01-02T12:00:00Z")
    assert _reason(good, ca_identity, now=not_after - timedelta(seconds=1), renewal_time=None) is None


def test_renewal_time_reached(good: SecretSnapshot, ca_identity: IssuerIdentity) -> None:
    at = NOW + timedelta(hours=16)
    assert _reason(good, ca_identity, now=at - timedelta(microseconds=1), renewal_time=at) is None
    reason = _reason(good, ca_identity, now=at, renewal_time=at)
    assert reason == Reason(
        "Renewing",
        "renewal time 2030-01-02T04:00:00Z reached; the current certificate expires at 2030-01-02T12:00:00Z",
    )


def test_checks_run_in_order(good: SecretSnapshot, ca_identity: IssuerIdentity) -> None:
    """An expired certificate that also mismatches the spec reports the spec first, and so on."""
    late = NOW + timedelta(days=30)
    spec = certificate_spec(commonName="changed")
    assert _reason(good, ca_identity, spec, now=late, renewal_time=late).code == "SpecChanged"  # type: ignore[union-attr]
    assert _reason(good, ca_identity, now=late, renewal_time=late).code == "Expired"  # type: ignore[union-attr]
    broken = replace(good, key_pem=b"x", certificate_pem=b"y")
    assert _reason(broken, ca_identity, spec).code == "InvalidKeyPair"  # type: ignore[union-attr]


# --- Secret metadata ------------------------------------------------------------------------------


def test_desired_metadata_without_a_certificate() -> None:
    spec = certificate_spec(
        secretTemplate={
            "labels": {"app": "web"},  # keys under certmint.dev/ are refused by the spec parser
            "annotations": {"reloader.stakater.com/match": "true"},
        }
    )
    labels, annotations = _metadata(spec, None)
    assert labels == {"app": "web", "certmint.dev/certificate-name": "web"}
    assert annotations == {
        "reloader.stakater.com/match": "true",
        "certmint.dev/certificate-name": "web",
        "certmint.dev/certificate-uid": "uid-web",
        "certmint.dev/issuer-name": "internal-ca",
        "certmint.dev/issuer-kind": "ClusterIssuer",
    }


def test_desired_metadata_describes_the_certificate(issued: Any) -> None:
    certificate, _ = issued
    _, annotations = _metadata(SPEC, certificate_facts(certificate.certificate))
    assert annotations["certmint.dev/serial-number"] == certificate.serial_number
    assert annotations["certmint.dev/not-after"] == "2030-01-02T12:00:00Z"
    assert annotations["certmint.dev/common-name"] == "web.default.svc"
    assert annotations["certmint.dev/alt-names"] == "web.default.svc,web.default.svc.cluster.local"
    assert annotations["certmint.dev/ip-sans"] == ""
    assert annotations["certmint.dev/uri-sans"] == ""


def test_long_certificate_names_get_a_valid_label_value() -> None:
    name = "a" * 60 + ".b" * 40
    value = certificate_label_value(name)
    assert len(value) <= 63
    assert value[0].isalnum() and value[-1].isalnum()
    assert value != certificate_label_value(name + "c")
    assert certificate_label_value("web") == "web"


def test_metadata_drift() -> None:
    desired_labels = {"certmint.dev/certificate-name": "web", "app": "web"}
    desired_annotations = {"certmint.dev/issuer-name": "ca"}
    current_labels = {**desired_labels, "added-by-someone": "x"}
    current_annotations = {**desired_annotations, "kubectl.kubernetes.io/last-applied-configuration": "{}"}
    assert metadata_drift(current_labels, current_annotations, desired_labels, desired_annotations) is None
    drift = metadata_drift(
        {"certmint.dev/certificate-name": "web", "app": "old", "other": "kept"},
        {},
        desired_labels,
        desired_annotations,
    )
    assert drift == ({"app": "web"}, {"certmint.dev/issuer-name": "ca"})


# --- spec to request ------------------------------------------------------------------------------


def test_requested_identity_and_template_follow_the_spec() -> None:
    spec = certificate_spec(
        ipAddresses=["10.0.0.1"],
        uris=["spiffe://td/web"],
        emailAddresses=["a@b.c"],
        subject={"organizations": ["Example"]},
        isCA=True,
        privateKey={"algorithm": "RSA"},
        duration="1h",
    )
    requested = requested_identity(spec)
    identity = requested.identity
    assert identity.common_name == "web.default.svc"
    assert identity.dns_names == ("web.default.svc", "web.default.svc.cluster.local")
    assert (identity.ip_addresses, identity.uris, identity.email_addresses) == (
        ("10.0.0.1",),
        ("spiffe://td/web",),
        ("a@b.c",),
    )
    assert identity.subject.organizations == ("Example",)
    assert (requested.duration, requested.key_algorithm, requested.is_ca) == (timedelta(hours=1), "RSA", True)
    # The spec is the identity its CSR asks for: nothing is copied, so no field can be forgotten on the way.
    assert identity is spec
    assert certificate_template(spec) is spec
    csr = parse_csr(build_csr(generate_private_key("ECDSA", 256), spec))
    assert (csr.common_name, csr.dns_names, csr.ip_addresses, csr.uris, csr.email_addresses, csr.subject) == (
        spec.common_name,
        spec.dns_names,
        spec.ip_addresses,
        spec.uris,
        spec.email_addresses,
        spec.subject,
    )


# --- whose Secret is it -----------------------------------------------------------------------------

_WEB = {"certificate_name": "web", "certificate_uid": "uid-web"}
_MARKED = {"certmint.dev/certificate-name": "web", "certmint.dev/certificate-uid": "uid-web"}
_LABEL = {"certmint.dev/certificate-name": "web"}


@pytest.mark.parametrize(
    ("labels", "annotations", "serials", "expected", "via"),
    [
        pytest.param(_LABEL, _MARKED, (None, None), Ownership.OURS, None, id="created-for-this-certificate"),
        pytest.param(
            {}, {"certmint.dev/handover-to": "web"}, (None, None), Ownership.OURS, "handover", id="handed-over"
        ),
        pytest.param(
            _LABEL,
            {**_MARKED, "certmint.dev/certificate-uid": "uid-old"},
            (None, None),
            Ownership.OURS,
            "previous",
            id="certmints-secret-of-a-deleted-certificate-of-this-name",
        ),
        pytest.param(_LABEL, _LABEL, ("0a", "0a"), Ownership.OURS, "legacy", id="written-before-uid-marks"),
        pytest.param({}, {}, (None, None), Ownership.NOT_OWNED, None, id="a-users-secret"),
        pytest.param({"app": "legacy"}, {}, ("0a", "0a"), Ownership.NOT_OWNED, None, id="a-users-tls-secret"),
        pytest.param(_LABEL, {}, ("0b", "0a"), Ownership.NOT_OWNED, None, id="labelled-by-hand"),
        pytest.param(_LABEL, _LABEL, ("0b", None), Ownership.NOT_OWNED, None, id="labelled-by-hand-no-status"),
        pytest.param(
            {}, {"certmint.dev/handover-to": "api"}, (None, None), Ownership.NOT_OWNED, None, id="handed-to-another"
        ),
        pytest.param(
            {"certmint.dev/certificate-name": "api"},
            {"certmint.dev/certificate-name": "api"},
            ("0a", "0a"),
            Ownership.NOT_OWNED,
            None,
            id="labelled-for-another-without-the-uid-mark",
        ),
        pytest.param(
            {"certmint.dev/certificate-name": "api"},
            {"certmint.dev/certificate-name": "api", "certmint.dev/certificate-uid": "uid-api"},
            (None, None),
            Ownership.IN_USE,
            None,
            id="another-certificates-secret",
        ),
    ],
)
def test_secret_ownership(
    labels: dict[str, str],
    annotations: dict[str, str],
    serials: tuple[str | None, str | None],
    expected: Ownership,
    via: str | None,
) -> None:
    secret_serial, status_serial = serials
    claim = secret_ownership(labels, annotations, secret_serial=secret_serial, status_serial=status_serial, **_WEB)
    assert (claim.ownership, claim.via) == (expected, via)
    if expected is Ownership.IN_USE:
        assert claim.other == "api"


def test_a_long_certificate_name_owns_its_secret_by_label_value() -> None:
    name = "a" * 80
    labels = {"certmint.dev/certificate-name": certificate_label_value(name)}
    claim = secret_ownership(
        labels,
        {"certmint.dev/certificate-uid": "uid-old"},
        certificate_name=name,
        certificate_uid="uid-new",
        secret_serial=None,
        status_serial=None,
    )
    assert claim.ownership is Ownership.OURS


@pytest.mark.parametrize(
    ("status_revision", "annotations", "expected"),
    [
        (3, {}, 3),
        (3, {"certmint.dev/certificate-revision": "4"}, 4),  # stored, then the operator died before the status
        (None, {}, 1),
        (5, {"certmint.dev/certificate-revision": "garbage"}, 5),
    ],
)
def test_stored_revision(status_revision: object, annotations: dict[str, str], expected: int) -> None:
    assert stored_revision(status_revision, annotations) == expected
