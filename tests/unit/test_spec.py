"""Parsing Certificate, CertificateRequest, Issuer and policy specs: defaults and actionable errors."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import fields
from datetime import timedelta
from typing import Any

import pytest

from certmint.core.spec import (
    EXTENDED_KEY_USAGES,
    KEY_USAGES,
    CertificateRequestSpec,
    CertificateSpec,
    IssuerRef,
    IssuerSpec,
    KeySpec,
    Policy,
    SpecError,
    SubjectPolicy,
    SubjectSpec,
)
from certmint.pki.names import SUBJECT_ATTRIBUTES
from certmint.pki.signing import IssuerURLs

MINIMAL: dict[str, Any] = {"secretName": "web-tls", "issuerRef": {"name": "ca"}, "dnsNames": ["web"]}


def _with(**changes: Any) -> dict[str, Any]:
    return {**MINIMAL, **changes}


def test_minimal_certificate_gets_every_default() -> None:
    spec = CertificateSpec.from_dict(MINIMAL)
    assert spec.secret_name == "web-tls"
    assert spec.issuer_ref == IssuerRef(name="ca", kind="Issuer")
    assert spec.dns_names == ("web",)
    assert spec.common_name is None
    assert spec.duration == timedelta(hours=2160)
    assert spec.renew_before is None
    assert spec.renew_before_percentage is None
    # The default ECDSA key signs and never encrypts (RFC 8813): no "key encipherment" (issue 12).
    assert spec.usages == ("digital signature", "server auth", "client auth")
    assert spec.usages_defaulted is True
    assert spec.is_ca is False
    assert spec.private_key == KeySpec(algorithm="ECDSA", size=256, encoding="PKCS1", rotation_policy="Always")
    assert spec.subject == SubjectSpec()
    assert dict(spec.secret_labels) == {}
    assert dict(spec.secret_annotations) == {}
    assert spec.revision_history_limit == 3
    assert spec.secret_deletion_policy == "Retain"


def test_full_certificate_is_parsed_field_by_field() -> None:
    spec = CertificateSpec.from_dict(
        {
            "secretName": "api-tls",
            "issuerRef": {"name": "root", "kind": "ClusterIssuer", "group": "certmint.dev"},
            "commonName": "api",
            "dnsNames": ["API.Example.com", "api.example.com", "*.api.example.com"],
            "ipAddresses": ["10.0.0.7", "fd00::0007"],
            "uris": ["spiffe://cluster.local/ns/default/sa/api"],
            "emailAddresses": ["ops@example.com"],
            "subject": {
                "organizations": ["Example"],
                "organizationalUnits": ["Platform"],
                "countries": ["DE"],
                "localities": ["Berlin"],
                "provinces": ["Berlin"],
                "streetAddresses": ["1 Main St"],
                "postalCodes": ["10115"],
                "serialNumber": "dev-1",
            },
            "duration": "1h",
            "renewBefore": "20m",
            "usages": ["server auth", "digital signature"],
            "isCA": False,
            "privateKey": {"algorithm": "RSA", "size": 3072, "encoding": "PKCS8", "rotationPolicy": "Never"},
            "secretTemplate": {"labels": {"app": "api"}, "annotations": {"reloader": "true"}},
            "revisionHistoryLimit": 5,
            "secretDeletionPolicy": "Delete",
        }
    )
    assert spec.issuer_ref == IssuerRef("root", "ClusterIssuer")
    assert spec.dns_names == ("api.example.com", "*.api.example.com")  # lower-cased, de-duplicated
    assert spec.ip_addresses == ("10.0.0.7", "fd00::7")  # canonical text
    assert spec.uris == ("spiffe://cluster.local/ns/default/sa/api",)
    assert spec.email_addresses == ("ops@example.com",)
    assert spec.subject.organizational_units == ("Platform",)
    assert spec.subject.street_addresses == ("1 Main St",)
    assert spec.subject.serial_number == "dev-1"
    assert spec.duration == timedelta(hours=1)
    assert spec.renew_before == timedelta(minutes=20)
    assert spec.usages == ("server auth", "digital signature")
    assert spec.private_key == KeySpec("RSA", 3072, "PKCS8", "Never")
    assert dict(spec.secret_labels) == {"app": "api"}
    assert dict(spec.secret_annotations) == {"reloader": "true"}
    assert spec.revision_history_limit == 5
    assert spec.secret_deletion_policy == "Delete"


def test_specs_share_the_immutable_parts_they_have_in_common() -> None:
    body = _with(
        duration="24h",
        usages=["server auth"],
        subject={"organizations": ["acme"]},
        privateKey={"algorithm": "ECDSA", "size": 384},
    )
    one = CertificateSpec.from_dict({**body, "dnsNames": ["one"]})
    two = CertificateSpec.from_dict({**body, "dnsNames": ["two"], "secretName": "two-tls"})
    for part in ("issuer_ref", "private_key", "subject", "duration", "usages", "secret_labels"):
        assert getattr(one, part) is getattr(two, part), part  # one object in memory, not one per certificate
    other = CertificateSpec.from_dict({**body, "privateKey": {"algorithm": "RSA"}})
    assert other.private_key == KeySpec("RSA", 2048, "PKCS1", "Always")  # equal values only
    assert one.dns_names == ("one",) and two.dns_names == ("two",)


def test_parsed_spec_is_immutable() -> None:
    spec = CertificateSpec.from_dict(_with(secretTemplate={"labels": {"a": "b"}}))
    with pytest.raises(TypeError):
        spec.secret_labels["x"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ({"algorithm": "ECDSA"}, KeySpec("ECDSA", 256, "PKCS1", "Always")),
        ({"algorithm": "ECDSA", "size": 521}, KeySpec("ECDSA", 521, "PKCS1", "Always")),
        ({"algorithm": "RSA"}, KeySpec("RSA", 2048, "PKCS1", "Always")),
        ({"algorithm": "RSA", "size": 4096}, KeySpec("RSA", 4096, "PKCS1", "Always")),
        ({"algorithm": "Ed25519", "encoding": "PKCS8"}, KeySpec("Ed25519", 0, "PKCS8", "Always")),
        ({"algorithm": "Ed25519"}, KeySpec("Ed25519", 0, "PKCS8", "Always")),  # PKCS1 cannot hold Ed25519
        ({}, KeySpec("ECDSA", 256, "PKCS1", "Always")),
    ],
)
def test_private_key_defaults_per_algorithm(key: dict[str, Any], expected: KeySpec) -> None:
    assert CertificateSpec.from_dict(_with(privateKey=key)).private_key == expected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"secretName": None}, "spec.secretName: is required"),
        ({"issuerRef": {}}, "spec.issuerRef.name: is required"),
        ({"issuerRef": {"name": "ca", "kind": "Vault"}}, 'spec.issuerRef.kind: "Vault" is not one of'),
        ({"dnsNames": []}, "spec: set at least one of commonName, dnsNames"),
        ({"dnsNames": ["bad name"]}, 'spec.dnsNames[0]: "bad name" is not a DNS name'),
        ({"dnsNames": ["ok", "b\u00fccher.de"]}, "spec.dnsNames[1]:"),
        ({"ipAddresses": ["10.0.0.300"]}, 'spec.ipAddresses[0]: "10.0.0.300" is not an IPv4 or IPv6 address'),
        ({"uris": ["no-scheme"]}, "spec.uris[0]:"),
        ({"emailAddresses": ["nobody"]}, "spec.emailAddresses[0]:"),
        ({"commonName": "x" * 65}, "spec.commonName: is longer than 64 characters"),
        ({"duration": "10x"}, 'spec.duration: "10x" is not a duration like "1h30m"'),
        ({"duration": "0s"}, "spec.duration: must be longer than zero"),
        (
            {"duration": "1h", "renewBefore": "1h"},
            "spec.renewBefore: 1h must be shorter than spec.duration 1h",
        ),
        (
            {"renewBefore": "1h", "renewBeforePercentage": 10},
            "set renewBefore or renewBeforePercentage, not both",
        ),
        ({"renewBeforePercentage": 100}, "spec.renewBeforePercentage: 100 must be between 1 and 99"),
        (
            {"privateKey": {"algorithm": "ECDSA", "size": 2048}},
            "spec.privateKey.size: 2048 is not a valid ECDSA",
        ),
        ({"privateKey": {"algorithm": "RSA", "size": 1024}}, "spec.privateKey.size: 1024 is not a valid RSA"),
        ({"privateKey": {"algorithm": "DSA"}}, 'spec.privateKey.algorithm: "DSA" is not one of'),
        ({"privateKey": {"encoding": "DER"}}, "spec.privateKey.encoding:"),
        ({"privateKey": {"rotationPolicy": "Sometimes"}}, "spec.privateKey.rotationPolicy:"),
        ({"usages": ["server auth", "teleport"]}, 'spec.usages: "teleport" is not a usage'),
        (
            {"usages": ["encipher only"]},
            "spec.usages: 'encipher only' and 'decipher only' need 'key agreement' as well (RFC 5280)",
        ),
        (
            {"usages": ["digital signature", "key encipherment"]},
            "spec.usages: 'key encipherment' and 'data encipherment' are not allowed with an ECDSA key (RFC 8813)",
        ),
        (
            {"usages": ["server auth", "cert sign"]},
            "spec.usages: 'cert sign' and 'crl sign' are only allowed with isCA: true",
        ),
        (
            {"isCA": True, "commonName": None, "subject": {"organizations": []}},
            "spec.commonName or spec.subject must be set when spec.isCA is true",
        ),
        ({"subject": {"countries": ["Germany"]}}, 'spec.subject.countries: "Germany" is not a two-letter'),
        ({"revisionHistoryLimit": 0}, "spec.revisionHistoryLimit: 0 must be at least 1"),
        ({"secretDeletionPolicy": "Orphan"}, "spec.secretDeletionPolicy:"),
        ({"isCA": "yes"}, "spec.isCA: must be true or false"),
        ({"dnsNames": "web"}, "spec.dnsNames: must be a list of strings"),
        ({"secretTemplate": {"labels": {"a": 1}}}, "spec.secretTemplate.labels: must map strings to strings"),
    ],
)
def test_invalid_certificate_specs_name_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        CertificateSpec.from_dict(_with(**changes))
    assert message in str(caught.value)


def test_identity_can_be_any_single_kind() -> None:
    for identity in (
        {"commonName": "x"},
        {"ipAddresses": ["::1"]},
        {"uris": ["spiffe://a/b"]},
        {"emailAddresses": ["a@b"]},
    ):
        body = {"secretName": "s", "issuerRef": {"name": "i"}, **identity}
        assert CertificateSpec.from_dict(body).secret_name == "s"


def test_usage_names_match_cert_manager() -> None:
    assert {"signing", "digital signature", "cert sign", "crl sign", "encipher only"} <= KEY_USAGES
    assert {"server auth", "client auth", "s/mime", "ocsp signing", "netscape sgc"} <= EXTENDED_KEY_USAGES
    assert len(KEY_USAGES | EXTENDED_KEY_USAGES) == 23
    assert not KEY_USAGES & EXTENDED_KEY_USAGES


def test_certificate_request_spec() -> None:
    pem = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
    spec = CertificateRequestSpec.from_dict({"request": pem, "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}})
    assert spec.request_pem == pem.encode()
    assert spec.issuer_ref == IssuerRef("ca", "ClusterIssuer")
    assert spec.duration == timedelta(hours=2160)
    assert spec.usages == (), "not set: the default depends on the CSR's key (controller.requests.judge_request)"
    assert spec.is_ca is False
    legacy = CertificateRequestSpec.from_dict(
        {
            "request": pem,
            "issuerRef": {"name": "ca"},
            "usages": ["client auth", "server auth", "key encipherment", "digital signature"],
        }
    )
    assert legacy.usages == (), "the old CRD default, stored in requests created before issue 12, reads as not set"
    with pytest.raises(SpecError) as caught:
        CertificateRequestSpec.from_dict({"request": pem, "issuerRef": {"name": "ca"}, "usages": ["cert sign"]})
    assert str(caught.value).startswith("spec.usages: 'cert sign' and 'crl sign' are only allowed with isCA: true")
    custom = CertificateRequestSpec.from_dict(
        {
            "request": pem,
            "issuerRef": {"name": "ca"},
            "duration": "10m",
            "usages": ["client auth"],
            "isCA": True,
        }
    )
    assert (custom.duration, custom.usages, custom.is_ca) == (timedelta(minutes=10), ("client auth",), True)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"issuerRef": {"name": "ca"}}, "spec.request: is required"),
        ({"request": "hello", "issuerRef": {"name": "ca"}}, "spec.request: must be PEM text"),
        (
            {
                "request": "-----BEGIN CERTIFICATE REQUEST-----",
                "issuerRef": {"name": "ca"},
                "duration": "-1m",
            },
            "spec.duration:",
        ),
    ],
)
def test_invalid_certificate_request_spec(body: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace(".", r"\.")):
        CertificateRequestSpec.from_dict(body)


def test_issuer_kinds() -> None:
    assert IssuerSpec.from_dict({"selfSigned": {}}) == IssuerSpec(
        signer="selfSigned", ca_secret_name=None, policy=Policy()
    )
    ca = IssuerSpec.from_dict({"ca": {"secretName": "root-ca"}, "policy": {"allowCA": True}})
    assert (ca.signer, ca.ca_secret_name, ca.policy.allow_ca) == ("ca", "root-ca", True)


def test_issuer_urls_are_cert_managers_fields() -> None:
    ca = IssuerSpec.from_dict(
        {
            "ca": {
                "secretName": "root-ca",
                "crlDistributionPoints": ["http://pki.example.com/ca.crl"],
                "ocspServers": ["http://ocsp.example.com"],
                "issuingCertificateURLs": ["http://pki.example.com/ca.crt", "ldap://ldap.example.com/cn=ca"],
            }
        }
    )
    assert ca.urls == IssuerURLs(
        ("http://pki.example.com/ca.crl",),
        ("http://ocsp.example.com",),
        ("http://pki.example.com/ca.crt", "ldap://ldap.example.com/cn=ca"),
    )
    self_signed = IssuerSpec.from_dict({"selfSigned": {"crlDistributionPoints": ["http://pki.example.com/a.crl"]}})
    assert self_signed.urls == IssuerURLs(crl_distribution_points=("http://pki.example.com/a.crl",))
    assert IssuerSpec.from_dict({"ca": {"secretName": "x"}}).urls == IssuerURLs()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "spec: set exactly one of selfSigned or ca"),
        ({"selfSigned": {}, "ca": {"secretName": "x"}}, "spec: set exactly one of selfSigned or ca"),
        ({"ca": {}}, "spec.ca.secretName: is required"),
        (
            {"selfSigned": {}, "policy": {"allowedIPRanges": ["10.0.0.0/33"]}},
            "spec.policy.allowedIPRanges[0]:",
        ),
        (
            {"selfSigned": {}, "policy": {"minDuration": "2h", "maxDuration": "1h"}},
            "spec.policy.minDuration:",
        ),
        (
            {"selfSigned": {}, "policy": {"allowedKeyAlgorithms": ["DSA"]}},
            "spec.policy.allowedKeyAlgorithms:",
        ),
        ({"selfSigned": {}, "policy": {"maxDuration": "forever"}}, "spec.policy.maxDuration:"),
        (
            {"ca": {"secretName": "x", "ocspServers": ["ocsp.example.com"]}},
            'spec.ca.ocspServers[0]: "ocsp.example.com" is not an absolute URL',
        ),
        (
            {"selfSigned": {"crlDistributionPoints": ["http://a b/c.crl"]}},
            "spec.selfSigned.crlDistributionPoints[0]:",
        ),
        (
            {"ca": {"secretName": "x", "issuingCertificateURLs": [f"http://e/{i}" for i in range(9)]}},
            "spec.ca.issuingCertificateURLs: at most 8 URLs, got 9",
        ),
    ],
)
def test_invalid_issuer_specs(body: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        IssuerSpec.from_dict(body)
    assert message in str(caught.value)


def test_policy_absent_lists_mean_unrestricted_and_empty_lists_mean_nothing() -> None:
    assert Policy.from_dict(None) == Policy()
    assert Policy.from_dict({}).allowed_dns_names is None
    policy = Policy.from_dict(
        {
            "allowedDNSNames": [],
            "allowedURIs": ["spiffe://cluster.local/ns/{namespace}/sa/*"],
            "allowedIPRanges": ["10.1.2.3/8", "fd00::/8"],
            "allowedEmailAddresses": ["*@example.com"],
            "minDuration": "5m",
            "maxDuration": "24h",
            "allowedKeyAlgorithms": ["ECDSA"],
            "allowedNamespaces": ["team-*"],
            "allowCA": False,
        }
    )
    assert policy.allowed_dns_names == ()
    assert policy.allowed_uris == ("spiffe://cluster.local/ns/{namespace}/sa/*",)
    assert policy.allowed_ip_ranges == ("10.0.0.0/8", "fd00::/8")  # host bits dropped
    assert policy.allowed_email_addresses == ("*@example.com",)
    assert (policy.min_duration, policy.max_duration) == (timedelta(minutes=5), timedelta(hours=24))
    assert policy.allowed_key_algorithms == ("ECDSA",)
    assert policy.allowed_namespaces == ("team-*",)
    assert policy.allow_ca is False


def test_spec_error_is_a_value_error_with_the_field() -> None:
    make: Callable[[], CertificateSpec] = lambda: CertificateSpec.from_dict(_with(duration="soon"))  # noqa: E731
    with pytest.raises(ValueError) as caught:
        make()
    assert isinstance(caught.value, SpecError)
    assert caught.value.field == "spec.duration"


# --- names the policy can judge (issue 11, items 2 and 4) ---------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"uris": ["spiffe://"]}, 'spec.uris[0]: "spiffe://" is not a valid SPIFFE ID: the trust domain is empty'),
        ({"uris": ["spiffe://cluster.local"]}, "the path is empty"),
        ({"uris": ["spiffe://cluster.local/"]}, "the path is empty"),
        ({"uris": ["spiffe://Cluster.local/ns/a"]}, "the trust domain"),
        ({"uris": ["spiffe://cluster.local/ns/a/"]}, "trailing"),
        ({"uris": ["spiffe://cluster.local/ns//a"]}, "empty path segment"),
        ({"uris": ["spiffe://cluster.local/ns/../a"]}, '"." or ".." path segment'),
        ({"uris": ["spiffe://cluster.local/ns/./a"]}, '"." or ".." path segment'),
        ({"uris": ["spiffe://cluster.local:8443/ns/a"]}, "port"),
        ({"uris": ["spiffe://user@cluster.local/ns/a"]}, "user info"),
        ({"uris": ["spiffe://cluster.local/ns/a?x=1"]}, "query"),
        ({"uris": ["spiffe://cluster.local/ns/a#x"]}, "fragment"),
        ({"uris": ["spiffe://cluster.local/ns/a%2Fb"]}, "percent-encoded"),
        ({"uris": ["SPIFFE://cluster.local/ns/a"]}, 'scheme must be "spiffe"'),
        ({"uris": ["spiffe:cluster.local/ns/a"]}, 'must start with "spiffe://"'),
        ({"commonName": "api.team-b.svc."}, 'spec.commonName: "api.team-b.svc." is not a valid host name'),
        ({"commonName": " web"}, "spec.commonName: "),
        ({"dnsNames": ["web_1.example.com"]}, 'spec.dnsNames[0]: "web_1.example.com" is not a DNS name'),
        ({"dnsNames": ["web.example.com."]}, 'spec.dnsNames[0]: "web.example.com." is not a DNS name'),
        ({"subject": {"organizations": [""]}}, "spec.subject.organizations[0]: "),
        ({"subject": {"organizations": ["a\u0000b"]}}, "spec.subject.organizations[0]: "),
    ],
)
def test_names_the_policy_cannot_judge_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        CertificateSpec.from_dict(_with(**changes))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://cluster.local/ns/default/sa/web",
        "spiffe://example.org/a.b-c_D/0",
        "spiffe://a_b.example-1.org/x",
        "https://example.com/path?q=1",  # only spiffe URIs follow the SPIFFE rules
    ],
)
def test_valid_uris_are_accepted(uri: str) -> None:
    assert CertificateSpec.from_dict(_with(uris=[uri])).uris == (uri,)


def test_policy_common_names_and_subject() -> None:
    policy = Policy.from_dict(
        {
            "allowedCommonNames": ["{namespace} *"],
            "allowedSubject": {"organizations": ["Example"], "countries": ["DE"], "serialNumbers": ["*"]},
        }
    )
    assert policy.allowed_common_names == ("{namespace} *",)
    assert policy.allowed_subject is not None
    assert policy.allowed_subject.organizations == ("Example",)
    assert policy.allowed_subject.countries == ("DE",)
    assert policy.allowed_subject.serial_numbers == ("*",)
    assert policy.allowed_subject.localities == ()
    assert Policy.from_dict({}).allowed_common_names is None
    assert Policy.from_dict({}).allowed_subject is None
    assert Policy.from_dict({"allowedSubject": {}}).allowed_subject is not None
    not_a_list = "spec.policy.allowedSubject.organizations: must be a list of strings"
    with pytest.raises(SpecError, match=re.escape(not_a_list)):
        Policy.from_dict({"allowedSubject": {"organizations": "Example"}})
    with pytest.raises(SpecError, match=re.escape('spec.policy.allowedSubject: unknown field "commonNames"')):
        Policy.from_dict({"allowedSubject": {"commonNames": ["x"]}})


def test_allowed_subject_has_a_pattern_list_for_every_kind_of_subject_attribute() -> None:
    assert set(SubjectPolicy.FIELDS.values()) == {f.name for f in fields(SubjectPolicy)}
    policy = SubjectPolicy.from_dict({key: [key] for key in SubjectPolicy.FIELDS}, "spec.policy.allowedSubject")
    assert [policy.patterns(a) for a in SUBJECT_ATTRIBUTES] == [(SubjectPolicy.key(a),) for a in SUBJECT_ATTRIBUTES]


def test_a_certificate_request_reads_cert_managers_base64_csr_as_well_as_pem() -> None:
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
    body = {"issuerRef": {"name": "ca"}}
    as_pem = CertificateRequestSpec.from_dict({**body, "request": pem.decode()})
    wrapped = base64.encodebytes(pem).decode()  # with line breaks, as some tools write it
    as_base64 = CertificateRequestSpec.from_dict({**body, "request": wrapped})
    assert as_base64.request_pem == as_pem.request_pem == pem
    with pytest.raises(SpecError, match="does not decode"):
        CertificateRequestSpec.from_dict({**body, "request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0t!"})
