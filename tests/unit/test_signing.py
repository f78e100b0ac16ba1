"""CA validation and signing: real certificates, verified with cryptography, clock injected."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import verification
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from certmint.pki.csr import CertificateTemplate, build_csr, build_subject, parse_csr
from certmint.pki.inspect import load_pem_chain
from certmint.pki.keys import PKIError, PrivateKey, encode_private_key, generate_private_key
from certmint.pki.names import SubjectNames
from certmint.pki.signing import (
    CAError,
    IssuerURLs,
    SigningAuthority,
    SigningRequest,
    backdate_for,
    self_sign,
    sign,
)
from tests.unit.builders import NOW

_PRINTABLE = x509.name._ASN1Type.PrintableString
DEFAULT_USAGES = ("digital signature", "key encipherment", "server auth", "client auth")


def _request(key: PrivateKey, template: CertificateTemplate, **kwargs: Any) -> SigningRequest:
    params: dict[str, Any] = {"duration": timedelta(hours=24), "usages": DEFAULT_USAGES, "is_ca": False}
    params.update(kwargs)
    return SigningRequest(csr=parse_csr(build_csr(key, template)), **params)


LEAF = CertificateTemplate(
    common_name="web.default.svc",
    dns_names=("web.default.svc", "web.default.svc.cluster.local"),
    ip_addresses=("10.0.0.7",),
    uris=("spiffe://cluster.local/ns/default/sa/web",),
)


# --- SigningAuthority --------------------------------------------------------------------------


def test_authority_properties(root_ca: Any, authority: SigningAuthority) -> None:
    assert authority.subject_text == "CN=Test Root CA"
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", authority.fingerprint_sha256)
    assert authority.fingerprint_sha256.replace(":", "") == root_ca.cert.fingerprint(hashes.SHA256()).hex().upper()
    assert authority.not_after == root_ca.cert.not_valid_after_utc
    assert authority.trust_anchor_pem == root_ca.cert_pem
    assert authority.chain == ()
    ski = root_ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert authority.subject_key_id == ski.hex()


def _ca_error(tls_crt: bytes, tls_key: bytes, now: Any = NOW, ca_crt: bytes | None = None) -> CAError:
    with pytest.raises(CAError) as caught:
        SigningAuthority.from_pem(tls_crt, tls_key, ca_crt=ca_crt, now=now)
    return caught.value


def test_unparseable_certificate_or_key(root_ca: Any) -> None:
    bad_crt = _ca_error(b"not a certificate", root_ca.key_pem)
    assert bad_crt.reason == "Unparseable"
    assert "tls.crt" in str(bad_crt)
    bad_key = _ca_error(root_ca.cert_pem, b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n")
    assert bad_key.reason == "Unparseable"
    assert "tls.key" in str(bad_key)


def test_key_mismatch(root_ca: Any) -> None:
    other = encode_private_key(generate_private_key("ECDSA", 384), "PKCS8")
    error = _ca_error(root_ca.cert_pem, other)
    assert error.reason == "KeyMismatch"
    assert "does not belong to CA certificate" in str(error)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ca": False}, "is not a CA"),
        ({"ca": None}, "is not a CA"),
        ({"key_cert_sign": False}, "lacks the keyCertSign key usage"),
    ],
)
def test_not_a_ca(make_ca: Callable[..., Any], options: dict[str, Any], message: str) -> None:
    pair = make_ca("Leaf Pretending", **options)
    error = _ca_error(pair.cert_pem, pair.key_pem)
    assert error.reason == "NotACA"
    assert message in str(error)


def test_ca_without_key_usage_extension_is_accepted(make_ca: Callable[..., Any]) -> None:
    pair = make_ca("Old Style CA", key_cert_sign=None)
    assert SigningAuthority.from_pem(pair.cert_pem, pair.key_pem, now=NOW).subject_text == "CN=Old Style CA"


def test_not_yet_valid_and_expired(make_ca: Callable[..., Any]) -> None:
    future = make_ca("Future CA", not_before=NOW + timedelta(hours=1), not_after=NOW + timedelta(days=30))
    error = _ca_error(future.cert_pem, future.key_pem)
    assert error.reason == "NotYetValid"
    assert "not valid before 2030-01-01T13:00:00Z" in str(error)
    past = make_ca("Past CA", not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(seconds=1))
    error = _ca_error(past.cert_pem, past.key_pem)
    assert error.reason == "Expired"
    assert "expired at 2030-01-01T11:59:59Z" in str(error)
    # The same CA was fine a day earlier: the clock is what decides.
    earlier = SigningAuthority.from_pem(past.cert_pem, past.key_pem, now=NOW - timedelta(days=1))
    assert earlier.subject_text == "CN=Past CA"


def test_ca_errors_are_pki_errors() -> None:
    assert issubclass(CAError, PKIError)


# --- sign ---------------------------------------------------------------------------------------


def test_signed_leaf_verifies_and_carries_exactly_what_was_asked(
    root_ca: Any, authority: SigningAuthority, key_of: Callable[[str, int], PrivateKey]
) -> None:
    key = key_of("ECDSA", 256)
    issued = sign(_request(key, LEAF), authority, now=NOW)
    cert = issued.certificate
    cert.verify_directly_issued_by(root_ca.cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert sans.critical is False
    assert sans.value.get_values_for_type(x509.DNSName) == [
        "web.default.svc",
        "web.default.svc.cluster.local",
    ]
    assert [str(ip) for ip in sans.value.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert sans.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/default/sa/web"
    ]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web.default.svc"
    assert cert.issuer == root_ca.cert.subject
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical is True
    assert (key_usage.value.digital_signature, key_usage.value.key_encipherment) == (True, True)
    assert (key_usage.value.key_cert_sign, key_usage.value.crl_sign, key_usage.value.key_agreement) == (
        False,
        False,
        False,
    )
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert (constraints.critical, constraints.value.ca) == (True, False)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki is not None and aki.hex() == authority.subject_key_id
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(serialization.Encoding.DER, spki) == key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    )
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=1)
    assert cert.not_valid_after_utc == NOW + timedelta(hours=24)
    assert (issued.not_before, issued.not_after) == (cert.not_valid_before_utc, cert.not_valid_after_utc)
    assert issued.serial_number == format(cert.serial_number, "x")
    assert 0 < cert.serial_number < 2**159
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)  # follows the P-384 CA key


def test_serial_numbers_are_unique(authority: SigningAuthority, key_of: Callable[[str, int], PrivateKey]) -> None:
    request = _request(key_of("ECDSA", 256), LEAF)
    serials = {sign(request, authority, now=NOW).serial_number for _ in range(20)}
    assert len(serials) == 20


def test_root_issuer_chain_and_ca(
    root_ca: Any, authority: SigningAuthority, key_of: Callable[[str, int], PrivateKey]
) -> None:
    issued = sign(_request(key_of("ECDSA", 256), LEAF), authority, now=NOW)
    assert issued.chain_pem == issued.certificate_pem  # the self-signed root is left out of tls.crt
    assert issued.ca_pem == root_ca.cert_pem


# --- the chain above the CA and the trust anchor, however the CA Secret was made -----------------

SERVER_USAGES = ("digital signature", "server auth", "client auth")
SERVER_NAME = "web.default.svc"


def _served(authority: SigningAuthority, key_of: Callable[[str, int], PrivateKey]) -> tuple[list[Any], Any]:
    """Sign a leaf; return its tls.crt as certificates and its ca.crt's root of the chain, after a real path
    validation (cryptography's RFC 5280 verifier) that trusts exactly ca.crt and is given the rest of tls.crt."""
    issued = sign(_request(key_of("ECDSA", 256), LEAF, usages=SERVER_USAGES), authority, now=NOW)
    served = load_pem_chain(issued.chain_pem)
    anchors = load_pem_chain(issued.ca_pem)
    assert anchors == list(authority.trust_anchors)
    anchor = authority.trust_anchor
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(anchors))
        .time(NOW)
        .build_server_verifier(x509.DNSName(SERVER_NAME))
    )
    path = verifier.verify(served[0], served[1:])
    assert path[-1] == anchor
    return served, anchor


def _certmint_ca(
    parent: SigningAuthority, name: str, key_of: Callable[[str, int], PrivateKey]
) -> tuple[bytes, bytes, bytes, x509.Certificate]:
    """The Secret certmint writes for an isCA Certificate under ``parent``: tls.crt, tls.key, ca.crt."""
    key = generate_private_key("ECDSA", 256)
    request = _request(key, CertificateTemplate(common_name=name), is_ca=True, duration=timedelta(days=30))
    issued = sign(request, parent, now=NOW)
    return issued.chain_pem, encode_private_key(key, "PKCS8"), issued.ca_pem, issued.certificate


def test_certmint_intermediate_secret_root_in_ca_crt_only(
    root_ca: Any, authority: SigningAuthority, key_of: Callable[[str, int], PrivateKey]
) -> None:
    tls_crt, tls_key, ca_crt, intermediate = _certmint_ca(authority, "Team Intermediate", key_of)
    assert load_pem_chain(tls_crt) == [intermediate]  # certmint leaves the root out of tls.crt
    assert ca_crt == root_ca.cert_pem
    sub = SigningAuthority.from_pem(tls_crt, tls_key, ca_crt=ca_crt, now=NOW)
    assert sub.chain == (root_ca.cert,)
    assert sub.anchored and sub.chain_warning is None
    assert sub.trust_anchor_fingerprint == root_ca.cert.fingerprint(hashes.SHA256()).hex(":").upper()
    served, anchor = _served(sub, key_of)
    assert served[1:] == [intermediate]  # tls.crt = leaf + intermediate, never the root
    assert anchor == root_ca.cert  # ca.crt = the root, not the intermediate


def test_two_certmint_intermediates_chain_to_the_root(
    root_ca: Any, authority: SigningAuthority, key_of: Callable[[str, int], PrivateKey]
) -> None:
    crt1, key1, ca1, int1 = _certmint_ca(authority, "Intermediate One", key_of)
    first = SigningAuthority.from_pem(crt1, key1, ca_crt=ca1, now=NOW)
    crt2, key2, ca2, int2 = _certmint_ca(first, "Intermediate Two", key_of)
    assert load_pem_chain(crt2) == [int2, int1]
    assert ca2 == root_ca.cert_pem
    second = SigningAuthority.from_pem(crt2, key2, ca_crt=ca2, now=NOW)
    assert second.chain == (int1, root_ca.cert)
    served, anchor = _served(second, key_of)
    assert (served[1:], anchor) == ([int2, int1], root_ca.cert)


def test_hand_made_secret_with_the_root_in_tls_crt(
    root_ca: Any, make_ca: Callable[..., Any], key_of: Callable[[str, int], PrivateKey]
) -> None:
    intermediate = make_ca("Test Intermediate", parent=root_ca)
    for ca_crt in (None, root_ca.cert_pem):
        authority = SigningAuthority.from_pem(
            intermediate.cert_pem + root_ca.cert_pem, intermediate.key_pem, ca_crt=ca_crt, now=NOW
        )
        assert authority.chain == (root_ca.cert,)
        assert authority.trust_anchor_pem == root_ca.cert_pem
        served, anchor = _served(authority, key_of)
        assert (served[1:], anchor) == ([intermediate.cert], root_ca.cert)


def test_hand_made_secret_without_the_root_in_tls_crt_takes_it_from_ca_crt(
    root_ca: Any, make_ca: Callable[..., Any], key_of: Callable[[str, int], PrivateKey]
) -> None:
    middle = make_ca("Middle", parent=root_ca)
    intermediate = make_ca("Test Intermediate", parent=middle)
    # tls.crt in any order above the CA; ca.crt a bundle that also holds another root (e.g. the next one)
    other_root = make_ca("Other Root")
    authority = SigningAuthority.from_pem(
        intermediate.cert_pem + middle.cert_pem,
        intermediate.key_pem,
        ca_crt=other_root.cert_pem + root_ca.cert_pem,
        now=NOW,
    )
    assert authority.chain == (middle.cert, root_ca.cert)
    served, anchor = _served(authority, key_of)
    assert (served[1:], anchor) == ([intermediate.cert, middle.cert], root_ca.cert)
    # Both roots reach the certificates' ca.crt, in ca.crt's order: the other root is a trust anchor too.
    assert authority.trust_anchors == (other_root.cert, root_ca.cert)


def test_the_rest_of_tls_crt_may_come_in_any_order(
    root_ca: Any, make_ca: Callable[..., Any], key_of: Callable[[str, int], PrivateKey]
) -> None:
    middle = make_ca("Middle", parent=root_ca)
    intermediate = make_ca("Test Intermediate", parent=middle)
    tls_crt = intermediate.cert_pem + root_ca.cert_pem + middle.cert_pem + middle.cert_pem
    authority = SigningAuthority.from_pem(tls_crt, intermediate.key_pem, now=NOW)
    assert authority.chain == (middle.cert, root_ca.cert)


def test_without_a_root_anywhere_the_anchor_is_the_top_and_the_warning_says_how_to_fix_it(
    root_ca: Any, make_ca: Callable[..., Any], key_of: Callable[[str, int], PrivateKey]
) -> None:
    intermediate = make_ca("Test Intermediate", parent=root_ca)
    authority = SigningAuthority.from_pem(intermediate.cert_pem, intermediate.key_pem, now=NOW)
    assert authority.chain == ()
    assert not authority.anchored
    assert authority.trust_anchor == intermediate.cert
    assert authority.chain_warning == (
        'the chain ends at "CN=Test Intermediate", which is not self-signed: add the root it chains to '
        '(issued by "CN=Test Root CA") to the CA Secret\'s ca.crt; until then certificates get '
        '"CN=Test Intermediate" as ca.crt, which most verifiers do not accept as a trust anchor'
    )
    issued = sign(_request(key_of("ECDSA", 256), LEAF, usages=SERVER_USAGES), authority, now=NOW)
    assert load_pem_chain(issued.chain_pem)[1:] == [intermediate.cert]  # the top is served: it is no root
    assert issued.ca_pem == intermediate.cert_pem


def test_a_ca_crt_outside_the_chain_is_refused(
    root_ca: Any, make_ca: Callable[..., Any], key_of: Callable[[str, int], PrivateKey]
) -> None:
    intermediate = make_ca("Test Intermediate", parent=root_ca)
    other_root = make_ca("Other Root")
    error = _ca_error(intermediate.cert_pem, intermediate.key_pem, ca_crt=other_root.cert_pem)
    assert error.reason == "ChainInvalid"
    assert str(error) == (
        'ca.crt holds "CN=Other Root", which is not in the chain of CA "CN=Test Intermediate" '
        '("CN=Test Intermediate"): ca.crt must hold the root that "CN=Test Intermediate" chains to '
        '(issued by "CN=Test Root CA")'
    )
    error = _ca_error(intermediate.cert_pem + root_ca.cert_pem, intermediate.key_pem, ca_crt=other_root.cert_pem)
    assert error.reason == "ChainInvalid"
    assert 'ca.crt must hold the root of that chain, "CN=Test Root CA"' in str(error)
    assert '("CN=Test Intermediate" → "CN=Test Root CA")' in str(error)


def test_a_root_with_the_right_name_but_another_key_is_not_taken(
    root_ca: Any, make_ca: Callable[..., Any], key_of: Callable[[str, int], PrivateKey]
) -> None:
    intermediate = make_ca("Test Intermediate", parent=root_ca)
    impostor = make_ca("Test Root CA", with_ski=False)  # same subject, no key id to tell it apart
    assert impostor.cert.subject == root_ca.cert.subject
    error = _ca_error(intermediate.cert_pem, intermediate.key_pem, ca_crt=impostor.cert_pem)
    assert error.reason == "ChainInvalid"
    error = _ca_error(intermediate.cert_pem + impostor.cert_pem, intermediate.key_pem)
    assert error.reason == "ChainInvalid"
    assert 'tls.crt holds "CN=Test Root CA", which is not in the chain of CA "CN=Test Intermediate"' in str(error)


def test_a_certificate_in_tls_crt_outside_the_chain_is_refused(
    root_ca: Any, make_ca: Callable[..., Any], key_of: Callable[[str, int], PrivateKey]
) -> None:
    intermediate = make_ca("Test Intermediate", parent=root_ca)
    stray = make_ca("Stray")
    error = _ca_error(intermediate.cert_pem + stray.cert_pem + root_ca.cert_pem, intermediate.key_pem)
    assert error.reason == "ChainInvalid"
    assert str(error) == (
        'tls.crt holds "CN=Stray", which is not in the chain of CA "CN=Test Intermediate" '
        '("CN=Test Intermediate" → "CN=Test Root CA"): tls.crt must hold the CA certificate first, then only '
        "the certificates above it (its issuer, that one's issuer, ...)"
    )


def test_tls_crt_that_starts_with_the_root_is_refused_naming_the_ca(root_ca: Any, make_ca: Callable[..., Any]) -> None:
    intermediate = make_ca("Test Intermediate", parent=root_ca)
    error = _ca_error(root_ca.cert_pem + intermediate.cert_pem, intermediate.key_pem)
    assert error.reason == "KeyMismatch"
    assert str(error).startswith(
        'CA key (tls.key) belongs to "CN=Test Intermediate", certificate 2 of tls.crt, not to the first one, '
        '"CN=Test Root CA": tls.crt must start with the CA certificate'
    )


def test_certificates_above_the_ca_must_be_valid_cas(root_ca: Any, make_ca: Callable[..., Any]) -> None:
    not_a_ca = make_ca("Not A CA", ca=False)
    under = make_ca("Test Intermediate", parent=not_a_ca)
    error = _ca_error(under.cert_pem + not_a_ca.cert_pem, under.key_pem)
    assert (error.reason, str(error)) == (
        "ChainInvalid",
        '"CN=Not A CA" in the chain of CA "CN=Test Intermediate" is not a CA (basicConstraints CA:FALSE)',
    )
    old_root = make_ca("Old Root", not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1))
    under_old = make_ca("Test Intermediate", parent=old_root)
    error = _ca_error(under_old.cert_pem, under_old.key_pem, ca_crt=old_root.cert_pem)
    assert error.reason == "Expired"
    assert str(error).startswith('certificate above the CA "CN=Old Root" expired at ')
    authority = SigningAuthority.from_pem(under.cert_pem, under.key_pem, now=NOW)  # unknown above: no judgement
    assert authority.valid_until == under.cert.not_valid_after_utc


def test_the_chain_expires_with_its_first_certificate(make_ca: Callable[..., Any]) -> None:
    short_root = make_ca("Short Root", not_after=NOW + timedelta(days=2))
    intermediate = make_ca("Test Intermediate", parent=short_root)
    authority = SigningAuthority.from_pem(
        intermediate.cert_pem, intermediate.key_pem, ca_crt=short_root.cert_pem, now=NOW
    )
    assert authority.not_after == intermediate.cert.not_valid_after_utc
    assert authority.valid_until == short_root.cert.not_valid_after_utc
    with pytest.raises(CAError) as caught:
        authority.validate(now=NOW + timedelta(days=3))
    assert caught.value.reason == "Expired"


def test_self_signed_ca_with_itself_as_ca_crt(root_ca: Any, key_of: Callable[[str, int], PrivateKey]) -> None:
    # the Secret certmint writes for a root: tls.crt = ca.crt = the root
    for ca_crt in (None, b"", root_ca.cert_pem):
        authority = SigningAuthority.from_pem(root_ca.cert_pem, root_ca.key_pem, ca_crt=ca_crt, now=NOW)
        assert authority.chain == () and authority.anchored and authority.chain_warning is None
        served, anchor = _served(authority, key_of)
        assert (len(served), anchor) == (1, root_ca.cert)


def test_unparseable_ca_crt(root_ca: Any) -> None:
    error = _ca_error(root_ca.cert_pem, root_ca.key_pem, ca_crt=b"-----BEGIN CERTIFICATE-----\nAA==\n")
    assert error.reason == "Unparseable"
    assert str(error).startswith("CA trust anchor (ca.crt) cannot be parsed: ")


def test_lifetime_is_truncated_to_the_ca(make_ca: Callable[..., Any], key_of: Callable[[str, int], PrivateKey]) -> None:
    short = make_ca("Short CA", not_before=NOW - timedelta(seconds=10), not_after=NOW + timedelta(days=10))
    authority = SigningAuthority.from_pem(short.cert_pem, short.key_pem, now=NOW)
    issued = sign(_request(key_of("ECDSA", 256), LEAF, duration=timedelta(days=90)), authority, now=NOW)
    assert issued.not_after == short.cert.not_valid_after_utc
    assert issued.not_before == short.cert.not_valid_before_utc  # back-dating stops at the CA's notBefore
    issued.certificate.verify_directly_issued_by(short.cert)


def test_backdating_is_proportional_for_short_certificates() -> None:
    assert backdate_for(timedelta(minutes=10)) == timedelta(seconds=6)
    assert backdate_for(timedelta(hours=24)) == timedelta(minutes=1)


def test_signing_refuses_once_the_ca_has_expired(
    authority: SigningAuthority, key_of: Callable[[str, int], PrivateKey]
) -> None:
    with pytest.raises(CAError) as caught:
        sign(_request(key_of("ECDSA", 256), LEAF), authority, now=authority.not_after)
    assert caught.value.reason == "Expired"


def test_issued_ca_certificate_can_itself_sign(
    authority: SigningAuthority, key_of: Callable[[str, int], PrivateKey]
) -> None:
    key = generate_private_key("ECDSA", 256)
    template = CertificateTemplate(common_name="Team Intermediate")
    issued = sign(_request(key, template, is_ca=True, duration=timedelta(days=30)), authority, now=NOW)
    usage = issued.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (usage.key_cert_sign, usage.crl_sign) == (True, True)
    assert issued.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    sub = SigningAuthority.from_pem(issued.chain_pem + issued.ca_pem, encode_private_key(key, "PKCS1"), now=NOW)
    leaf = sign(_request(key_of("ECDSA", 256), LEAF), sub, now=NOW)
    leaf.certificate.verify_directly_issued_by(issued.certificate)
    assert leaf.ca_pem == authority.trust_anchor_pem


def test_csr_extensions_other_than_sans_are_ignored(
    authority: SigningAuthority, key_of: Callable[[str, int], PrivateKey]
) -> None:
    key = key_of("ECDSA", 256)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sneaky")]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    request = SigningRequest(
        csr=parse_csr(csr.public_bytes(serialization.Encoding.PEM)),
        duration=timedelta(hours=1),
        usages=DEFAULT_USAGES,
        is_ca=False,
    )
    cert = sign(request, authority, now=NOW).certificate
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_usage_aliases_and_extended_usages(
    authority: SigningAuthority, key_of: Callable[[str, int], PrivateKey]
) -> None:
    usages = ("signing", "s/mime", "code signing", "ipsec user", "netscape sgc")
    cert = sign(_request(key_of("ECDSA", 256), LEAF, usages=usages), authority, now=NOW).certificate
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature is True
    eku = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert eku == [
        ExtendedKeyUsageOID.CODE_SIGNING,
        ExtendedKeyUsageOID.EMAIL_PROTECTION,
        x509.ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
        x509.ObjectIdentifier("2.16.840.1.113730.4.1"),
    ]


def test_only_extended_usages_means_no_key_usage_extension(
    authority: SigningAuthority, key_of: Callable[[str, int], PrivateKey]
) -> None:
    cert = sign(_request(key_of("ECDSA", 256), LEAF, usages=("client auth",)), authority, now=NOW).certificate
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.KeyUsage)


def test_invalid_requests_are_pki_errors(authority: SigningAuthority, key_of: Callable[[str, int], PrivateKey]) -> None:
    key = key_of("ECDSA", 256)
    with pytest.raises(PKIError, match="duration must be positive"):
        sign(_request(key, LEAF, duration=timedelta(0)), authority, now=NOW)
    with pytest.raises(PKIError, match="key agreement"):
        sign(_request(key, LEAF, usages=("encipher only",)), authority, now=NOW)


@pytest.mark.parametrize(
    ("algorithm", "size", "hash_type"),
    [
        ("RSA", 2048, hashes.SHA256),
        ("ECDSA", 256, hashes.SHA256),
        ("ECDSA", 521, hashes.SHA512),
        ("Ed25519", 0, None),
    ],
)
def test_signature_digest_follows_the_ca_key(
    make_ca: Callable[..., Any],
    key_of: Callable[[str, int], PrivateKey],
    algorithm: str,
    size: int,
    hash_type: type[hashes.HashAlgorithm] | None,
) -> None:
    ca = make_ca(f"{algorithm} CA", key=key_of(algorithm, size))
    authority = SigningAuthority.from_pem(ca.cert_pem, ca.key_pem, now=NOW)
    cert = sign(_request(key_of("ECDSA", 384), LEAF), authority, now=NOW).certificate
    cert.verify_directly_issued_by(ca.cert)
    if hash_type is None:
        assert cert.signature_hash_algorithm is None
    else:
        assert isinstance(cert.signature_hash_algorithm, hash_type)


# --- self_sign ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "size"), [("ECDSA", 256), ("Ed25519", 0), ("RSA", 2048)])
def test_self_sign(key_of: Callable[[str, int], PrivateKey], algorithm: str, size: int) -> None:
    key = key_of(algorithm, size)
    template = CertificateTemplate(common_name="Bootstrap Root CA")
    issued = self_sign(_request(key, template, is_ca=True, duration=timedelta(days=3650)), key, now=NOW)
    cert = issued.certificate
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    assert issued.ca_pem == issued.chain_pem == issued.certificate_pem
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert aki == ski
    assert issued.not_after == NOW + timedelta(days=3650)
    assert issued.not_before == NOW - timedelta(minutes=1)
    authority = SigningAuthority.from_pem(issued.chain_pem, encode_private_key(key, "PKCS8"), now=NOW)
    assert authority.subject_text == "CN=Bootstrap Root CA"


def test_self_sign_requires_the_csr_key(key_of: Callable[[str, int], PrivateKey]) -> None:
    request = _request(key_of("ECDSA", 256), LEAF)
    with pytest.raises(PKIError, match="does not match the CSR"):
        self_sign(request, key_of("ECDSA", 384), now=NOW)


# --- the subject is built, not copied (issue 11, item 2) ----------------------------------------


def test_the_subject_is_built_from_the_judged_values_not_copied_from_the_csr(
    authority: SigningAuthority, key_of: Callable[[str, int], PrivateKey]
) -> None:
    key = key_of("ECDSA", 256)
    # CN first, O twice around a C, PrintableString encodings: a tenant's own encoding of its subject.
    written = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "web.default.svc", _type=_PRINTABLE),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example", _type=_PRINTABLE),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Two"),
        ]
    )
    pem = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(written)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("web.default.svc")]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    csr = parse_csr(pem)
    request = SigningRequest(csr=csr, duration=timedelta(hours=1), usages=DEFAULT_USAGES, is_ca=False)
    cert = sign(request, authority, now=NOW)
    assert cert.certificate.subject != written
    assert cert.certificate.subject == build_subject(csr.common_name, csr.subject)
    assert cert.certificate.subject.rfc4514_string() == "CN=web.default.svc,O=Example Two,O=Example,C=DE"


def test_san_extension_is_critical_when_the_built_subject_is_empty(
    authority: SigningAuthority, key_of: Callable[[str, int], PrivateKey]
) -> None:
    cert = sign(_request(key_of("ECDSA", 256), CertificateTemplate(uris=("spiffe://td/x",))), authority, now=NOW)
    assert len(cert.certificate.subject) == 0
    assert cert.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical is True


def test_certificate_path_still_signs_the_same_subject(
    authority: SigningAuthority, key_of: Callable[[str, int], PrivateKey]
) -> None:
    template = CertificateTemplate(
        common_name="web.default.svc",
        dns_names=("web.default.svc",),
        subject=SubjectNames(organizations=("Example",), countries=("DE",), localities=("Berlin",), serial_number="7"),
    )
    key = key_of("ECDSA", 256)
    cert = sign(_request(key, template), authority, now=NOW).certificate
    assert cert.subject == x509.load_pem_x509_csr(build_csr(key, template)).subject


# -- trust anchors as a set -------------------------------------------------------------------------------


def test_other_roots_of_ca_crt_become_trust_anchors_in_its_order(
    root_ca: Any, make_ca: Callable[..., Any], key_of: Callable[[str, int], PrivateKey]
) -> None:
    """A root rotated in (or out) sits beside the current one in the CA Secret's ca.crt: both are in every issued
    certificate's ca.crt, so peers trust leaves of either; the chain and the served tls.crt do not change."""
    next_root = make_ca("Next Root")
    alone = SigningAuthority.from_pem(root_ca.cert_pem, root_ca.key_pem, ca_crt=root_ca.cert_pem, now=NOW)
    before = SigningAuthority.from_pem(
        root_ca.cert_pem, root_ca.key_pem, ca_crt=root_ca.cert_pem + next_root.cert_pem, now=NOW
    )
    after = SigningAuthority.from_pem(
        root_ca.cert_pem, root_ca.key_pem, ca_crt=next_root.cert_pem + root_ca.cert_pem, now=NOW
    )
    assert alone.trust_anchors == (root_ca.cert,) and alone.trust_bundle_pem == root_ca.cert_pem
    assert alone.trust_bundle_fingerprint == alone.trust_anchor_fingerprint  # as recorded before anchors were a set
    assert before.trust_anchors == (root_ca.cert, next_root.cert)
    assert after.trust_anchors == (next_root.cert, root_ca.cert)
    assert before.trust_bundle_pem == root_ca.cert_pem + next_root.cert_pem
    fingerprints = {a.trust_bundle_fingerprint for a in (alone, before, after)}
    assert len(fingerprints) == 3  # every change of the set is a change certificates must follow
    assert before.chain == alone.chain == ()
    served, anchor = _served(before, key_of)
    assert anchor == root_ca.cert and served[1:] == []


def test_only_valid_self_signed_cas_of_ca_crt_become_anchors(
    root_ca: Any, make_ca: Callable[..., Any], key_of: Callable[[str, int], PrivateKey]
) -> None:
    """An intermediate of another chain, an expired root or a root not valid yet in ca.crt is no trust anchor."""
    other_intermediate = make_ca("Other Intermediate", parent=make_ca("Other Root"))
    expired = make_ca("Expired Root", not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1))
    future = make_ca("Future Root", not_before=NOW + timedelta(days=1), not_after=NOW + timedelta(days=30))
    bundle = other_intermediate.cert_pem + expired.cert_pem + root_ca.cert_pem + future.cert_pem
    authority = SigningAuthority.from_pem(root_ca.cert_pem, root_ca.key_pem, ca_crt=bundle, now=NOW)
    assert authority.trust_anchors == (root_ca.cert,)


# --- the issuer's URLs (cert-manager's crlDistributionPoints, ocspServers, issuingCertificateURLs) ----------


URLS = IssuerURLs(
    crl_distribution_points=("http://pki.example.com/a.crl", "ldap://ldap.example.com/cn=a"),
    ocsp_servers=("http://ocsp.example.com",),
    issuing_certificate_urls=("http://pki.example.com/a.crt",),
)


def _access(cert: x509.Certificate) -> list[tuple[x509.ObjectIdentifier, str]]:
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    assert not aia.critical
    return [(d.access_method, d.access_location.value) for d in aia.value]


def _crl_urls(cert: x509.Certificate) -> list[str]:
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    assert not cdp.critical
    return [name.value for point in cdp.value for name in point.full_name or []]


def test_a_ca_issuers_urls_are_in_every_certificate_it_signs(authority: SigningAuthority) -> None:
    key = generate_private_key("ECDSA", 256)
    cert = sign(_request(key, LEAF, urls=URLS), authority, now=NOW).certificate
    assert _crl_urls(cert) == list(URLS.crl_distribution_points)
    assert _access(cert) == [
        (AuthorityInformationAccessOID.OCSP, "http://ocsp.example.com"),
        (AuthorityInformationAccessOID.CA_ISSUERS, "http://pki.example.com/a.crt"),
    ]


def test_without_urls_there_is_no_crl_or_aia_extension(authority: SigningAuthority) -> None:
    cert = sign(_request(generate_private_key("ECDSA", 256), LEAF), authority, now=NOW).certificate
    present = {type(e.value) for e in cert.extensions}
    assert not present & {x509.CRLDistributionPoints, x509.AuthorityInformationAccess}


def test_a_self_signed_certificate_gets_only_the_crl_it_was_given() -> None:
    key = generate_private_key("ECDSA", 256)
    urls = IssuerURLs(crl_distribution_points=("http://pki.example.com/self.crl",))
    cert = self_sign(_request(key, LEAF, urls=urls), key, now=NOW).certificate
    assert _crl_urls(cert) == ["http://pki.example.com/self.crl"]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
