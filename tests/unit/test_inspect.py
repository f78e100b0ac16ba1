"""Reading certificates back into facts comparable with specs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed448
from cryptography.x509.oid import NameOID

from certmint.pki.inspect import certificate_facts, load_pem_chain
from certmint.pki.keys import PKIError
from certmint.pki.names import SubjectNames
from certmint.pki.signing import SigningAuthority
from tests.unit.builders import NOW, certificate_spec, issue_for


def test_facts_round_trip_what_the_spec_asked_for(authority: SigningAuthority) -> None:
    spec = certificate_spec(
        commonName="api",
        dnsNames=["zeta.example.com", "Alpha.example.com"],
        ipAddresses=["fd00::7", "10.0.0.7"],
        uris=["spiffe://td/b", "spiffe://td/a"],
        emailAddresses=["ops@example.com"],
        subject={"organizations": ["Example"], "countries": ["DE"], "serialNumber": "dev-1"},
        usages=["signing", "server auth"],
        privateKey={"algorithm": "RSA", "size": 2048},
        duration="2h",
    )
    issued, _ = issue_for(spec, authority)
    facts = certificate_facts(issued.certificate)
    assert facts.common_name == "api"
    assert facts.dns_names == ("alpha.example.com", "zeta.example.com")  # normalised and sorted
    assert facts.ip_addresses == ("10.0.0.7", "fd00::7")
    assert facts.uris == ("spiffe://td/a", "spiffe://td/b")
    assert facts.email_addresses == ("ops@example.com",)
    assert facts.usages == frozenset({"digital signature", "server auth"})  # "signing" is an alias
    assert facts.is_ca is False
    assert (facts.key_algorithm, facts.key_size) == ("RSA", 2048)
    assert facts.serial_number == issued.serial_number
    assert facts.not_before == NOW - timedelta(minutes=1)
    assert facts.not_after == NOW + timedelta(hours=2)
    assert facts.issuer_key_id == authority.subject_key_id
    assert facts.subject_key_id is not None and facts.subject_key_id != facts.issuer_key_id
    assert facts.issuer_text == "CN=Test Root CA"
    assert facts.subject == SubjectNames(organizations=("Example",), countries=("DE",), serial_number="dev-1")
    assert facts.self_issued is False
    assert facts.not_after.tzinfo is not None


def test_facts_of_a_ca_certificate(root_ca: Any) -> None:
    facts = certificate_facts(root_ca.cert)
    assert facts.is_ca is True
    assert {"cert sign", "crl sign", "digital signature"} <= facts.usages
    assert facts.self_issued is True
    assert facts.issuer_key_id is None  # the test builder adds no AKI
    assert (facts.key_algorithm, facts.key_size) == ("ECDSA", 384)


def _bare_certificate(**extensions: Any) -> x509.Certificate:
    key = ed448.Ed448PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bare")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
    )
    for extension in extensions.values():
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, None)


def test_facts_never_fail_on_foreign_certificates() -> None:
    eku = x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.2.3.4.5")])
    facts = certificate_facts(_bare_certificate(eku=eku))
    assert facts.key_algorithm == "Ed448"  # not one certmint issues, but reported
    assert facts.usages == frozenset({"1.2.3.4.5"})
    assert (facts.dns_names, facts.is_ca, facts.subject_key_id, facts.issuer_key_id) == (
        (),
        False,
        None,
        None,
    )
    assert facts.serial_number == "1"


def test_load_pem_chain_keeps_order(root_ca: Any, make_ca: Any) -> None:
    intermediate = make_ca("Intermediate", parent=root_ca)
    chain = load_pem_chain(intermediate.cert_pem + b"\n" + root_ca.cert_pem)
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=Intermediate", "CN=Test Root CA"]
    assert chain[0].fingerprint(hashes.SHA256()) == intermediate.cert.fingerprint(hashes.SHA256())


@pytest.mark.parametrize(
    "pem",
    [b"", b"junk", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
)
def test_load_pem_chain_rejects_garbage_and_empty(pem: bytes) -> None:
    with pytest.raises(PKIError):
        load_pem_chain(pem)
