"""Reading certificates back into facts comparable with specs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448

from certmint.pki.inspect import certificate_facts, chain_above, issued_by, leads_to, load_pem_chain, self_signed
from certmint.pki.keys import PKIError
from certmint.pki.names import SubjectNames
from certmint.pki.signing import SigningAuthority
from tests.unit.builders import NOW, build_ca, certificate_spec, issue_for
from tests.x509util import certificate_builder, common_name


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
    builder = certificate_builder(common_name("bare"), key.public_key(), NOW, NOW + timedelta(days=1), serial=1)
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


# --- who issued whom ------------------------------------------------------------------------------


def _ca(name: str, key: Any, *, issuer: tuple[str, Any] | None = None, ski: bytes | None = None) -> x509.Certificate:
    """A CA certificate named ``name`` for ``key``, signed by ``issuer`` (name, key) or by itself; the AKI names
    the signer's key as SubjectKeyIdentifier.from_public_key derives it."""
    issuer_name, issuer_key = issuer or (name, key)
    builder = (
        certificate_builder(
            common_name(name), key.public_key(), NOW, NOW + timedelta(days=1), issuer=common_name(issuer_name)
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier(ski) if ski else x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    return builder.sign(issuer_key, hashes.SHA256())


def test_issued_by_checks_name_key_identifier_and_signature() -> None:
    root_key, other_key, int_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _ca("Root", root_key)
    child = _ca("Int", int_key, issuer=("Root", root_key))
    assert issued_by(child, root)
    assert not issued_by(root, child)
    assert not issued_by(child, _ca("Root", other_key))  # same name, another key: the signature tells
    assert not issued_by(child, _ca("Root", root_key, ski=b"\x01" * 20))  # same key, but the AKI names another
    assert not issued_by(child, _ca("Other", root_key))  # the right key under another name
    assert self_signed(root) and not self_signed(child)
    assert not self_signed(_ca("Int", int_key, issuer=("Int", root_key)))  # self-issued, not self-signed


def test_chain_above_follows_issuers_and_prefers_a_self_signed_one() -> None:
    root_key, int_key, sub_key, x_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    root = _ca("Root", root_key)
    cross = _ca("Root", root_key, issuer=("X", x_key))  # the same root key, cross-signed by X
    middle = _ca("Int", int_key, issuer=("Root", root_key))
    sub = _ca("Sub", sub_key, issuer=("Int", int_key))
    assert chain_above(sub, [root, middle]) == ([middle, root], True)
    assert chain_above(sub, [cross, middle, root]) == ([middle, root], True)
    assert chain_above(sub, [cross, middle]) == ([middle, cross], False)  # X is unknown
    assert chain_above(sub, []) == ([], False)
    assert chain_above(root, [middle]) == ([], True)


def test_a_served_chain_leads_to_the_anchor_above_its_last_certificate() -> None:
    """What decides whether a certificate of a previous CA is still trusted (and its re-issue may be spread)."""
    root, other_root = build_ca("Root A"), build_ca("Root B")
    intermediate = build_ca("Issuing A", parent=root)
    authority = SigningAuthority.from_pem(intermediate.cert_pem, intermediate.key_pem, ca_crt=root.cert_pem, now=NOW)
    issued, _ = issue_for(certificate_spec(), authority)
    chain = load_pem_chain(issued.chain_pem)  # what tls.crt holds: the leaf, then the intermediate
    assert [c.subject for c in chain] == [chain[0].subject, intermediate.cert.subject]
    assert leads_to(chain, [other_root.cert, root.cert], NOW)
    assert not leads_to(chain, [other_root.cert], NOW)
    assert not leads_to([*chain[:1], other_root.cert], [root.cert], NOW)  # a broken link
    assert not leads_to(chain, [root.cert], intermediate.cert.not_valid_after_utc)  # the intermediate expired
    direct, _ = issue_for(certificate_spec(), SigningAuthority.from_pem(root.cert_pem, root.key_pem, now=NOW))
    assert leads_to(load_pem_chain(direct.chain_pem), [root.cert], NOW)
    assert not leads_to([], [root.cert], NOW)
