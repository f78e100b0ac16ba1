"""The spec parser refuses what the CRD refuses at admission (issue 11, item 12), with the same advice.

A Certificate can reach the operator without the CRD's rules (an older CRD still installed, a restore from
a backup): the parser is the second line of defence, and its message goes to the Ready condition.
"""

from __future__ import annotations

from typing import Any

import pytest

from certmint.core.spec import CertificateSpec, IssuerSpec, SpecError

MINIMAL: dict[str, Any] = {"secretName": "web-tls", "issuerRef": {"name": "ca"}, "dnsNames": ["web"]}
KEYSTORE: dict[str, Any] = {"create": True, "passwordSecretRef": {"name": "pw", "key": "password"}}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(
            {"ipAddresses": ["::ffff:10.0.0.1"]},
            'spec.ipAddresses[0]: "::ffff:10.0.0.1" is an IPv4-mapped IPv6 address, which is not accepted: '
            "write 10.0.0.1",
            id="ipv4-mapped-dotted",
        ),
        pytest.param(
            {"ipAddresses": ["10.0.0.2", "0:0:0:0:0:ffff:a00:1"]},
            'spec.ipAddresses[1]: "0:0:0:0:0:ffff:a00:1" is an IPv4-mapped IPv6 address, which is not accepted: '
            "write 10.0.0.1",
            id="ipv4-mapped-hex",
        ),
        pytest.param(
            {"ipAddresses": ["fe80::1%eth0"]},
            'spec.ipAddresses[0]: "fe80::1%eth0" has a zone (%eth0); write the address alone',
            id="ipv6-zone",
        ),
        pytest.param(
            {"secretTemplate": {"labels": {"app": "web", "certmint.dev/certificate-name": "other"}}},
            "spec.secretTemplate.labels: must not set certmint.dev/certificate-name: keys under certmint.dev/ "
            "and its subdomains are reserved for the operator",
            id="reserved-label",
        ),
        pytest.param(
            {"secretTemplate": {"annotations": {"certmint.dev/certificate-uid": "0000"}}},
            "spec.secretTemplate.annotations: must not set certmint.dev/certificate-uid",
            id="reserved-annotation",
        ),
        pytest.param(
            {"secretTemplate": {"annotations": {"trust.certmint.dev/bundle": "x"}}},
            "spec.secretTemplate.annotations: must not set trust.certmint.dev/bundle",
            id="reserved-subdomain",
        ),
        pytest.param(
            {"duration": "3000000h"}, "spec.duration: must be at most 87600h (10 years)", id="duration-too-long"
        ),
        pytest.param(
            {"signatureAlgorithm": "SHA384WithRSA"},
            "spec.signatureAlgorithm: is not supported by certmint: the issuer's key decides it",
            id="signature-algorithm",
        ),
        pytest.param(
            {"otherNames": [{"oid": "1.3.6.1.4.1.311.20.2.3", "utf8Value": "upn@example.com"}]},
            "spec.otherNames: is not supported by certmint",
            id="other-names",
        ),
        pytest.param({"literalSubject": "CN=web"}, "spec.literalSubject: is not supported by certmint", id="literal"),
        pytest.param(
            {"keystores": {"pkcs12": {**KEYSTORE, "password": "hunter2"}}},
            "spec.keystores.pkcs12.password: is not supported by certmint",
            id="pkcs12-literal-password",
        ),
        pytest.param(
            {"keystores": {"jks": {**KEYSTORE, "password": "hunter2"}}},
            "spec.keystores.jks.password: is not supported by certmint",
            id="jks-literal-password",
        ),
        pytest.param(
            {"keystores": {"pkcs12": {**KEYSTORE, "profile": "LegacyRC2"}}},
            "spec.keystores.pkcs12.profile: only Modern2023 is supported",
            id="pkcs12-legacy-profile",
        ),
        pytest.param(
            {"secretTemplate": {"labels": {"Certmint.Dev/handover-to": "web"}}},
            "spec.secretTemplate.labels: must not set Certmint.Dev/handover-to",
            id="reserved-any-case",
        ),
    ],
)
def test_refused_like_at_admission(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        CertificateSpec.from_dict({**MINIMAL, **extra})
    assert str(err.value).startswith(message), str(err.value)


def test_what_is_not_reserved_or_mapped_is_kept() -> None:
    spec = CertificateSpec.from_dict(
        {
            **MINIMAL,
            # ::ffff:0:a00:1 is IPv4-translated (RFC 6052 style), not IPv4-mapped: an ordinary IPv6 address.
            "ipAddresses": ["10.0.0.1", "::ffff:0:a00:1", "FD00::7"],
            "secretTemplate": {
                "labels": {"notcertmint.dev/x": "1", "app": "web"},
                "annotations": {"example.com/certmint.dev": "1"},
            },
        }
    )
    assert spec.ip_addresses == ("10.0.0.1", "::ffff:0:a00:1", "fd00::7")
    assert dict(spec.secret_labels) == {"notcertmint.dev/x": "1", "app": "web"}
    assert dict(spec.secret_annotations) == {"example.com/certmint.dev": "1"}


def test_issuer_policy_durations_are_bounded_like_at_admission() -> None:
    with pytest.raises(SpecError) as err:
        IssuerSpec.from_dict({"selfSigned": {}, "policy": {"maxDuration": "3000000h"}})
    assert "spec.policy.maxDuration: must be at most 87600h (10 years)" in str(err.value)
    assert IssuerSpec.from_dict({"selfSigned": {}, "policy": {"maxDuration": "87600h"}}).policy.max_duration


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            {"selfSigned": {}, "policy": {"approval": "Manual"}},
            "spec.policy.approval: Manual needs spec.ca: a selfSigned issuer signs only Certificates",
            id="manual-self-signed",
        ),
        pytest.param(
            {
                "ca": {"secretName": "ca"},
                "policy": {"approval": "Manual"},
                "podCertificates": {"signerName": "certmint.dev/x", "trustDomain": "cluster.local"},
            },
            "spec.policy.approval: Manual cannot be used with spec.podCertificates",
            id="manual-pod-certificates",
        ),
        pytest.param(
            {"ca": {"secretName": "ca"}, "policy": {"approval": "manual"}},
            'spec.policy.approval: "manual" is not one of Automatic, Manual',
            id="approval-unknown",
        ),
    ],
)
def test_issuer_approval_refused_like_at_admission(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        IssuerSpec.from_dict(spec)
    assert str(err.value).startswith(message), str(err.value)


def test_issuer_approval_defaults_to_automatic() -> None:
    assert not IssuerSpec.from_dict({"ca": {"secretName": "ca"}}).policy.manual_approval
    manual = IssuerSpec.from_dict({"ca": {"secretName": "ca"}, "policy": {"approval": "Manual"}})
    assert manual.policy.manual_approval


def test_the_pkcs12_profile_certmint_writes_is_accepted() -> None:
    spec = CertificateSpec.from_dict({**MINIMAL, "keystores": {"pkcs12": {**KEYSTORE, "profile": "Modern2023"}}})
    assert spec.keystores.pkcs12 is not None and spec.keystores.pkcs12.secret == "pw"
