"""Building and verifying CSRs."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from certmint.pki.csr import CertificateTemplate, build_csr, parse_csr
from certmint.pki.keys import PKIError, PrivateKey
from certmint.pki.names import SubjectNames


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der)
    return b"-----BEGIN CERTIFICATE REQUEST-----\n" + body + b"-----END CERTIFICATE REQUEST-----\n"


TEMPLATE = CertificateTemplate(
    common_name="web.default.svc",
    dns_names=("web.default.svc", "*.web.default.svc"),
    ip_addresses=("10.0.0.7", "fd00::7"),
    uris=("spiffe://cluster.local/ns/default/sa/web",),
    email_addresses=("ops@example.com",),
    subject=SubjectNames(organizations=("Example",), countries=("DE",), serial_number="dev-1"),
)


@pytest.mark.parametrize(("algorithm", "size"), [("ECDSA", 256), ("ECDSA", 521), ("RSA", 2048), ("Ed25519", 0)])
def test_build_then_parse_round_trips(key_of: Callable[[str, int], PrivateKey], algorithm: str, size: int) -> None:
    key = key_of(algorithm, size)
    info = parse_csr(build_csr(key, TEMPLATE))
    assert info.common_name == "web.default.svc"
    assert info.dns_names == ("web.default.svc", "*.web.default.svc")
    assert info.ip_addresses == ("10.0.0.7", "fd00::7")
    assert info.uris == ("spiffe://cluster.local/ns/default/sa/web",)
    assert info.email_addresses == ("ops@example.com",)
    assert (info.key_algorithm, info.key_size) == (algorithm, size)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    assert info.public_key.public_bytes(serialization.Encoding.DER, public) == key.public_key().public_bytes(
        serialization.Encoding.DER, public
    )
    assert info.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example"
    assert info.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "DE"
    assert info.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "dev-1"


def test_subject_order_follows_go_pkix(key_of: Callable[[str, int], PrivateKey]) -> None:
    key_template = CertificateTemplate(
        common_name="cn", subject=SubjectNames(organizations=("O",), countries=("DE",), localities=("L",))
    )
    info = parse_csr(build_csr(key_of("ECDSA", 256), key_template))
    assert info.subject.rfc4514_string() == "CN=cn,L=L,O=O,C=DE"  # RFC 4514 prints the last RDN first


def test_san_extension_is_critical_only_without_subject(key_of: Callable[[str, int], PrivateKey]) -> None:
    key = key_of("ECDSA", 256)
    no_subject = x509.load_pem_x509_csr(build_csr(key, CertificateTemplate(uris=("spiffe://td/x",))))
    assert len(no_subject.subject) == 0
    assert no_subject.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical is True
    with_cn = x509.load_pem_x509_csr(build_csr(key, CertificateTemplate(common_name="a", dns_names=("a",))))
    assert with_cn.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical is False


def test_no_san_extension_when_there_are_no_sans(key_of: Callable[[str, int], PrivateKey]) -> None:
    csr = x509.load_pem_x509_csr(build_csr(key_of("ECDSA", 256), CertificateTemplate(common_name="only-cn")))
    with pytest.raises(x509.ExtensionNotFound):
        csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    info = parse_csr(csr.public_bytes(serialization.Encoding.PEM))
    assert (info.common_name, info.dns_names, info.ip_addresses) == ("only-cn", (), ())


def test_tampered_csr_is_rejected(key_of: Callable[[str, int], PrivateKey]) -> None:
    pem = build_csr(key_of("ECDSA", 256), CertificateTemplate(common_name="tamper-me", dns_names=("tamper-me",)))
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    assert der.count(b"tamper-me") == 2
    forged = _pem(der.replace(b"tamper-me", b"tamper-mf"))
    assert x509.load_pem_x509_csr(forged).subject.rfc4514_string() == "CN=tamper-mf"  # still parses...
    with pytest.raises(PKIError, match="signature does not verify"):
        parse_csr(forged)  # ...but is refused


@pytest.mark.parametrize(
    "pem", [b"", b"hello", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"]
)
def test_garbage_is_rejected_with_a_clear_message(pem: bytes) -> None:
    with pytest.raises(PKIError, match="not a PEM-encoded PKCS#10"):
        parse_csr(pem)


def test_invalid_subject_is_a_pki_error(key_of: Callable[[str, int], PrivateKey]) -> None:
    with pytest.raises(PKIError, match="invalid subject"):
        build_csr(key_of("ECDSA", 256), CertificateTemplate(common_name="x" * 65))
