"""pki.constraints: name constraints written into a CA, and every SAN judged against a chain's constraints."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509

from certmint.core.spec import CertificateSpec, SpecError
from certmint.pki.constraints import NameConstraints, NameSet, violations
from certmint.pki.csr import CertificateTemplate, build_csr, parse_csr
from certmint.pki.keys import PKIError, generate_private_key
from certmint.pki.signing import SigningAuthority, SigningRequest, self_sign, sign
from tests.unit.builders import NOW

SHOP = NameConstraints(
    permitted=NameSet(
        dns_domains=("shop.svc", ".example.com"), ip_ranges=("10.0.0.0/8",), uri_domains=("cluster.local",)
    ),
    excluded=NameSet(dns_domains=("admin.shop.svc",), email_addresses=("example.org",)),
    critical=True,
)


def _ca(constraints: NameConstraints | None) -> SigningAuthority:
    key = generate_private_key("ECDSA", 256)
    template = CertificateTemplate(common_name="constrained CA")
    request = SigningRequest(
        csr=parse_csr(build_csr(key, template)),
        duration=timedelta(days=30),
        usages=("digital signature", "cert sign", "crl sign"),
        is_ca=True,
        name_constraints=constraints,
    )
    issued = self_sign(request, key, now=NOW)
    return SigningAuthority(issued.certificate, key)


def test_the_extension_is_written_as_asked_and_read_back() -> None:
    ca = _ca(SHOP).certificate
    ext = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert ext.critical
    assert NameConstraints.of(ca) == SHOP
    assert NameConstraints.of(_ca(None).certificate) is None


@pytest.mark.parametrize(
    ("names", "outside"),
    [
        ({"dns_names": ["web.shop.svc", "shop.svc", "a.b.example.com"]}, []),
        ({"dns_names": ["example.com"]}, ["DNS name 'example.com' is outside"]),  # .example.com: subdomains only
        ({"dns_names": ["evilshop.svc"]}, ["DNS name 'evilshop.svc' is outside"]),
        ({"dns_names": ["admin.shop.svc"]}, ["DNS name 'admin.shop.svc' is excluded"]),
        ({"ip_addresses": ["10.1.2.3"]}, []),
        ({"ip_addresses": ["192.168.0.1"]}, ["IP address '192.168.0.1' is outside"]),
        ({"ip_addresses": ["fd00::1"]}, ["IP address 'fd00::1' is outside"]),
        ({"uris": ["spiffe://cluster.local/ns/shop/sa/web"]}, []),
        ({"uris": ["spiffe://other.domain/ns/shop/sa/web"]}, ["URI 'spiffe://other.domain/ns/shop/sa/web' is outside"]),
        ({"email_addresses": ["ops@example.org"]}, ["email address 'ops@example.org' is excluded"]),
        ({"email_addresses": ["ops@example.net"]}, []),  # no email is permitted-listed: emails are not restricted
    ],
)
def test_each_san_is_judged_by_type(names: dict[str, list[str]], outside: list[str]) -> None:
    found = violations(
        names.get("dns_names", []),
        names.get("ip_addresses", []),
        names.get("uris", []),
        names.get("email_addresses", []),
        [_ca(SHOP).certificate],
    )
    assert len(found) == len(outside), found
    for text, expected in zip(found, outside, strict=True):
        assert text.startswith(expected) and "constrained CA" in text


def test_a_leaf_outside_the_constraints_is_never_signed() -> None:
    authority = _ca(SHOP)
    key = generate_private_key("ECDSA", 256)
    inside = SigningRequest(
        csr=parse_csr(build_csr(key, CertificateTemplate(dns_names=("web.shop.svc",)))),
        duration=timedelta(hours=1),
        usages=("digital signature", "server auth"),
        is_ca=False,
    )
    assert sign(inside, authority, now=NOW).certificate
    outside = SigningRequest(
        csr=parse_csr(build_csr(key, CertificateTemplate(dns_names=("web.other.svc",)))),
        duration=timedelta(hours=1),
        usages=("digital signature", "server auth"),
        is_ca=False,
    )
    with pytest.raises(PKIError, match=r"'web\.other\.svc' is outside the name constraints"):
        sign(outside, authority, now=NOW)


CA_SPEC: dict[str, Any] = {"secretName": "ca", "issuerRef": {"name": "root"}, "commonName": "shop CA", "isCA": True}


def test_the_spec_reads_cert_managers_fields() -> None:
    spec = CertificateSpec.from_dict(
        {
            **CA_SPEC,
            "nameConstraints": {
                "critical": True,
                "permitted": {"dnsDomains": ["shop.svc"], "ipRanges": ["10.0.0.1/8"]},
                "excluded": {"emailAddresses": ["example.org"], "uriDomains": [".evil.example"]},
            },
        }
    )
    assert spec.name_constraints == NameConstraints(
        NameSet(dns_domains=("shop.svc",), ip_ranges=("10.0.0.0/8",)),
        NameSet(email_addresses=("example.org",), uri_domains=(".evil.example",)),
        critical=True,
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {**CA_SPEC, "isCA": False, "dnsNames": ["a"], "nameConstraints": {"permitted": {"dnsDomains": ["a"]}}},
            "spec.nameConstraints: only a CA certificate",
        ),
        ({**CA_SPEC, "nameConstraints": {}}, "spec.nameConstraints: names no permitted or excluded name"),
        (
            {**CA_SPEC, "nameConstraints": {"permitted": {"ipRanges": ["10.0.0.0/40"]}}},
            "spec.nameConstraints.permitted.ipRanges[0]",
        ),
    ],
)
def test_bad_name_constraints_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        CertificateSpec.from_dict(spec)
    assert message in str(caught.value)
