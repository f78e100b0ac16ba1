"""Usages by key type, CA certificates without extended key usages, and no empty names (issue 12, items 2-4).

The RFC facts are written down here a second time, from the RFCs, and checked against what the PKI core
really signs: RSA (RFC 3279 2.3.1), ECDSA (RFC 5480 3, RFC 8813 3), Ed25519 (RFC 8410 5, RFC 9295 3), and
RFC 5280 4.2.1.3 for "cert sign" in CA certificates only. zlint's RFC lints check the same bits
(e_ecdsa_ee_invalid_ku, e_rsa_allowed_ku_ee / _ca / _no_encipherment_ca, n_ecdsa_ee_invalid_ku, ...).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certmint.controller.requests import judge_request
from certmint.controller.signers import KINDS
from certmint.core.conditions import Condition
from certmint.core.decisions import certificate_template, spec_differences
from certmint.core.spec import CertificateRequestSpec, CertificateSpec, SpecError
from certmint.pki.csr import CertificateTemplate, build_csr, parse_csr
from certmint.pki.inspect import certificate_facts
from certmint.pki.keys import PKIError, PrivateKey
from certmint.pki.names import SubjectNames
from certmint.pki.signing import IssuedCertificate, SigningAuthority, SigningRequest, self_sign, sign
from certmint.pki.usages import (
    KEY_USAGES,
    LEGACY_DEFAULT_USAGES,
    default_usages,
    is_legacy_default,
    resolve_usages,
    usage_problems,
)
from tests.integration.invalid_specs import INVALID_OBJECTS, VALID_OBJECTS
from tests.unit.builders import NOW, cached_key

KEY_TYPES = [("ECDSA", 256), ("RSA", 2048), ("Ed25519", 0)]
KEY_USAGE_NAMES = sorted(KEY_USAGES - {"signing"})  # "signing" is an alias of "digital signature"

#: The key usages each RFC allows, per key algorithm, for an end-entity certificate and for a CA certificate.
#: ECDSA's "encipher only" / "decipher only" also need "key agreement" (tested on their own below).
RFC_ALLOWED: dict[tuple[str, bool], set[str]] = {
    ("RSA", False): {"digital signature", "content commitment", "key encipherment", "data encipherment"},
    # RFC 3279 allows the encipherments on an RSA CA but recommends against them; zlint errs on them
    # (e_rsa_allowed_ku_no_encipherment_ca), so certmint refuses them.
    ("RSA", True): {"digital signature", "content commitment", "cert sign", "crl sign"},
    ("ECDSA", False): {"digital signature", "content commitment", "key agreement"},
    ("ECDSA", True): {"digital signature", "content commitment", "key agreement", "cert sign", "crl sign"},
    ("Ed25519", False): {"digital signature", "content commitment"},
    ("Ed25519", True): {"digital signature", "content commitment", "cert sign", "crl sign"},
}

BASE: dict[str, Any] = {"secretName": "s", "issuerRef": {"name": "ca"}, "duration": "24h"}


def _spec(**fields: Any) -> CertificateSpec:
    return CertificateSpec.from_dict({**BASE, **fields})


def _private_key(algorithm: str, size: int) -> dict[str, Any]:
    return (
        {"algorithm": algorithm, "encoding": "PKCS8"}
        if algorithm == "Ed25519"
        else {"algorithm": algorithm, "size": size}
    )


def _key_usage(cert: x509.Certificate) -> set[str]:
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    bits = ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement"]
    bits += ["key_cert_sign", "crl_sign"]
    return {bit for bit in bits if getattr(ku, bit)}


def _ekus(cert: x509.Certificate) -> set[str] | None:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    return {oid.dotted_string for oid in eku}


SERVER_AUTH, CLIENT_AUTH, EMAIL = "1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.4"


def _issue(spec: CertificateSpec, authority: SigningAuthority | None = None) -> tuple[IssuedCertificate, PrivateKey]:
    """Issue exactly as the controller does: a CSR from the spec, signed with the spec's (resolved) usages."""
    key = cached_key(spec.private_key.algorithm, spec.private_key.size)
    request = SigningRequest(
        csr=parse_csr(build_csr(key, certificate_template(spec))),
        duration=spec.duration,
        usages=spec.usages,
        is_ca=spec.is_ca,
    )
    issued = self_sign(request, key, now=NOW) if authority is None else sign(request, authority, now=NOW)
    return issued, key


# --------------------------------------------------------------------------- defaults by key type (item 2)


@pytest.mark.parametrize(("algorithm", "size"), KEY_TYPES)
def test_default_leaf_usages_are_what_the_rfcs_allow_for_the_key(algorithm: str, size: int) -> None:
    spec = _spec(dnsNames=["web.default.svc"], privateKey=_private_key(algorithm, size))
    assert spec.usages_defaulted
    root, root_key = _issue(_spec(commonName="Root", isCA=True))
    leaf, _ = _issue(spec, SigningAuthority(certificate=root.certificate, key=root_key))
    ku = _key_usage(leaf.certificate)
    expected = {"digital_signature", "key_encipherment"} if algorithm == "RSA" else {"digital_signature"}
    assert ku == expected, f"{algorithm} leaf: RFC 8813 / RFC 8410 forbid key encipherment for signing-only keys"
    assert _ekus(leaf.certificate) == {SERVER_AUTH, CLIENT_AUTH}, "defaults still suit mTLS"
    assert not spec_differences(spec, certificate_facts(leaf.certificate))


@pytest.mark.parametrize(("algorithm", "size"), KEY_TYPES)
def test_default_ca_usages_sign_certificates_and_crls_and_constrain_nothing(algorithm: str, size: int) -> None:
    spec = _spec(commonName=f"{algorithm} Root", isCA=True, privateKey=_private_key(algorithm, size))
    assert spec.usages == ("digital signature", "cert sign", "crl sign")
    issued, _ = _issue(spec)
    assert _key_usage(issued.certificate) == {"digital_signature", "key_cert_sign", "crl_sign"}
    assert _ekus(issued.certificate) is None, "a CA without an ExtendedKeyUsage extension limits no leaf below it"
    assert not spec_differences(spec, certificate_facts(issued.certificate)), "an issued CA matches its spec"


def test_a_ca_that_asks_for_extended_key_usages_gets_them_and_still_matches_its_spec() -> None:
    spec = _spec(commonName="Server CA", isCA=True, usages=["server auth"])
    issued, _ = _issue(spec)
    assert _ekus(issued.certificate) == {SERVER_AUTH}
    assert {"key_cert_sign", "crl_sign"} <= _key_usage(issued.certificate)
    assert not spec_differences(spec, certificate_facts(issued.certificate))


def _openssl_verify(tmp_path: Path, purpose: str, leaf: x509.Certificate, *chain: x509.Certificate) -> str:
    root, *intermediates = reversed(chain)
    files = {"root.pem": [root], "untrusted.pem": intermediates, "leaf.pem": [leaf]}
    for name, certs in files.items():
        (tmp_path / name).write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs))
    argv = ["openssl", "verify", "-x509_strict", "-purpose", purpose, "-attime", str(int(NOW.timestamp()))]
    argv += ["-CAfile", str(tmp_path / "root.pem")]
    if intermediates:
        argv += ["-untrusted", str(tmp_path / "untrusted.pem")]
    result = subprocess.run([*argv, str(tmp_path / "leaf.pem")], capture_output=True, text=True, check=False)
    return result.stdout + result.stderr


def test_an_email_leaf_under_default_cas_is_usable_for_smime(tmp_path: Path) -> None:
    """Item 3: CAs with default usages used to carry server auth + client auth EKUs, and OpenSSL refused an
    S/MIME leaf below them with "unsuitable certificate purpose" at depths 1 and 2."""
    root, root_key = _issue(_spec(commonName="Root", isCA=True))
    intermediate, int_key = _issue(
        _spec(commonName="Intermediate", isCA=True), SigningAuthority(certificate=root.certificate, key=root_key)
    )
    authority = SigningAuthority(certificate=intermediate.certificate, key=int_key, chain=(root.certificate,))
    leaf, _ = _issue(
        _spec(emailAddresses=["ops@example.com"], usages=["digital signature", "email protection"]), authority
    )
    output = _openssl_verify(tmp_path, "smimesign", leaf.certificate, intermediate.certificate, root.certificate)
    assert output.strip().endswith("OK"), output
    # The same chain is still fine for TLS (no EKU on a CA means unrestricted), and a server leaf is too.
    server, _ = _issue(_spec(dnsNames=["web.default.svc"]), authority)
    output = _openssl_verify(tmp_path, "sslserver", server.certificate, intermediate.certificate, root.certificate)
    assert output.strip().endswith("OK"), output


# --------------------------------------------------------------------------- refusals (item 2)


@pytest.mark.parametrize("is_ca", [False, True], ids=["leaf", "ca"])
@pytest.mark.parametrize("algorithm", ["ECDSA", "RSA", "Ed25519"])
@pytest.mark.parametrize("usage", KEY_USAGE_NAMES)
def test_each_key_usage_is_allowed_exactly_where_the_rfcs_allow_it(usage: str, algorithm: str, is_ca: bool) -> None:
    requested = [usage, "key agreement"] if usage in ("encipher only", "decipher only") else [usage]
    allowed = set(requested) <= RFC_ALLOWED[(algorithm, is_ca)] | (
        {"encipher only", "decipher only"} if algorithm == "ECDSA" else set()
    )
    problems = usage_problems(requested, key_algorithm=algorithm, is_ca=is_ca)
    assert (not problems) is allowed, (requested, problems)


@pytest.mark.parametrize(
    ("key", "usages", "is_ca", "message"),
    [
        (
            "ECDSA",
            ["digital signature", "key encipherment", "server auth"],
            False,
            "spec.usages: 'key encipherment' and 'data encipherment' are not allowed with an ECDSA key (RFC 8813)",
        ),
        (
            "ECDSA",
            ["digital signature", "data encipherment"],
            False,
            "spec.usages: 'key encipherment' and 'data encipherment' are not allowed with an ECDSA key (RFC 8813)",
        ),
        (
            "Ed25519",
            ["digital signature", "key encipherment"],
            False,
            "spec.usages: 'key encipherment', 'data encipherment', 'key agreement', 'encipher only' and 'decipher "
            "only' are not allowed with an Ed25519 key (RFC 8410)",
        ),
        ("Ed25519", ["key agreement"], False, "are not allowed with an Ed25519 key (RFC 8410)"),
        (
            "RSA",
            ["digital signature", "key encipherment"],
            True,
            "spec.usages: 'key encipherment' and 'data encipherment' are not allowed on an RSA CA certificate",
        ),
        ("RSA", ["key agreement"], False, "are not allowed with an RSA key (RFC 3279)"),
        ("ECDSA", ["crl sign"], False, "spec.usages: 'cert sign' and 'crl sign' are only allowed with isCA: true"),
        (
            "ECDSA",
            ["key agreement", "encipher only", "decipher only"],
            False,
            "spec.usages: 'encipher only' and 'decipher only' exclude each other",
        ),
    ],
)
def test_forbidden_combinations_are_refused_by_the_spec_parser(
    key: str, usages: list[str], is_ca: bool, message: str
) -> None:
    size = {"ECDSA": 256, "RSA": 2048, "Ed25519": 0}[key]
    with pytest.raises(SpecError) as caught:
        _spec(commonName="x", privateKey=_private_key(key, size), usages=usages, isCA=is_ca)
    assert message in str(caught.value)
    assert caught.value.field == "spec.usages"


def test_allowed_explicit_usages_are_kept_as_written() -> None:
    spec = _spec(dnsNames=["a"], privateKey={"algorithm": "RSA"}, usages=["key encipherment", "server auth"])
    assert (spec.usages, spec.usages_defaulted) == (("key encipherment", "server auth"), False)
    spec = _spec(dnsNames=["a"], usages=["signing", "key agreement", "client auth"])  # ECDSA: key agreement is fine
    assert spec.usages == ("signing", "key agreement", "client auth")


# --------------------------------------------------------------------------- the upgrade from the old default


@pytest.mark.parametrize(
    "stored",
    [
        list(LEGACY_DEFAULT_USAGES),
        ["client auth", "server auth", "key encipherment", "digital signature"],  # any order: the CRD's list is a set
    ],
)
@pytest.mark.parametrize(("algorithm", "size", "is_ca"), [*[(a, s, False) for a, s in KEY_TYPES], ("RSA", 2048, True)])
def test_the_old_crd_default_stored_in_existing_objects_reads_as_not_set(
    stored: list[str], algorithm: str, size: int, is_ca: bool
) -> None:
    """Every Certificate created before issue 12 has the old default persisted by the API server. It must keep
    working (not be refused for key encipherment on an ECDSA key or an RSA CA) and get its key's default."""
    spec = _spec(commonName="x", privateKey=_private_key(algorithm, size), usages=stored, isCA=is_ca)
    assert spec.usages_defaulted
    assert spec.usages == default_usages(algorithm, is_ca=is_ca)
    assert is_legacy_default(stored)


def test_only_exactly_the_old_default_reads_as_not_set() -> None:
    assert not is_legacy_default([*LEGACY_DEFAULT_USAGES, "code signing"])
    assert not is_legacy_default(LEGACY_DEFAULT_USAGES[:3])
    assert not is_legacy_default(["signing", "key encipherment", "server auth", "client auth"])  # an alias: explicit
    with pytest.raises(SpecError, match="not allowed with an ECDSA key"):
        _spec(dnsNames=["a"], usages=["signing", "key encipherment", "server auth", "client auth"])


@pytest.mark.parametrize("is_ca", [False, True], ids=["ecdsa-leaf", "ecdsa-ca"])
def test_a_certificate_issued_with_the_old_default_is_not_reissued_on_upgrade(is_ca: bool) -> None:
    """An upgrade must not re-issue every ECDSA leaf and every CA at once (a CA with rotationPolicy Always would
    get a new key, and every trust bundle with it): the new default applies at the next renewal."""
    fields: dict[str, Any] = {"commonName": "x", "isCA": is_ca}
    old = CertificateSpec.from_dict({**BASE, **fields})
    issued, _ = _issue(old.__class__(**{**_fields(old), "usages": LEGACY_DEFAULT_USAGES}))  # what old code signed
    assert "key_encipherment" in _key_usage(issued.certificate)
    upgraded = _spec(**fields, usages=list(LEGACY_DEFAULT_USAGES))
    assert spec_differences(upgraded, certificate_facts(issued.certificate)) == []


def _fields(spec: CertificateSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in spec.__dataclass_fields__}


# --------------------------------------------------------------------------- CertificateRequests (items 2 and 4)

PEM = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"


def _request(usages: list[str] | None = None, is_ca: bool = False) -> CertificateRequestSpec:
    body: dict[str, Any] = {"request": PEM, "issuerRef": {"name": "ca"}, "isCA": is_ca}
    if usages is not None:
        body["usages"] = usages
    return CertificateRequestSpec.from_dict(body)


def _csr(algorithm: str, size: int, template: CertificateTemplate | None = None) -> Any:
    template = template or CertificateTemplate(common_name="web", dns_names=("web",))
    return parse_csr(build_csr(cached_key(algorithm, size), template))


@pytest.mark.parametrize(("algorithm", "size"), KEY_TYPES)
def test_a_request_without_usages_gets_the_default_of_its_csrs_key(algorithm: str, size: int) -> None:
    assert judge_request(_request(), _csr(algorithm, size)) == default_usages(algorithm, is_ca=False)
    assert judge_request(_request(is_ca=True), _csr(algorithm, size)) == ("digital signature", "cert sign", "crl sign")
    legacy = _request(list(LEGACY_DEFAULT_USAGES))
    assert judge_request(legacy, _csr(algorithm, size)) == default_usages(algorithm, is_ca=False)


def test_a_request_whose_usages_its_key_cannot_have_is_invalid() -> None:
    judged = judge_request(_request(["digital signature", "key agreement"]), _csr("Ed25519", 0))
    assert isinstance(judged, Condition)
    assert (judged.type, judged.status, judged.reason) == ("InvalidRequest", "True", "InvalidUsages")
    assert judged.message.startswith("spec.usages: 'key encipherment', 'data encipherment', 'key agreement'")
    assert judged.message.endswith("(the CSR's key is Ed25519)")
    assert judge_request(_request(["key agreement", "server auth"]), _csr("ECDSA", 256)) == (
        "key agreement",
        "server auth",
    )


def test_a_ca_request_with_an_empty_subject_is_invalid() -> None:
    csr = _csr("ECDSA", 256, CertificateTemplate(dns_names=("ca.example",)))
    judged = judge_request(_request(is_ca=True), csr)
    assert isinstance(judged, Condition)
    assert (judged.type, judged.reason) == ("InvalidRequest", "EmptySubject")
    assert "requires it to be non-empty" in judged.message
    assert judge_request(_request(), csr) == default_usages("ECDSA", is_ca=False), "a leaf may have only SANs"
    named = _csr("ECDSA", 256, CertificateTemplate(dns_names=("ca",), subject=SubjectNames(organizations=("Ex",))))
    assert judge_request(_request(is_ca=True), named) == ("digital signature", "cert sign", "crl sign")


def test_resolve_usages_refuses_with_every_reason() -> None:
    with pytest.raises(PKIError) as caught:
        resolve_usages(["key encipherment", "cert sign"], key_algorithm="ECDSA", is_ca=False)
    assert "RFC 8813" in str(caught.value) and "isCA: true" in str(caught.value)


# --------------------------------------------------------------------------- empty names (item 4)


def test_a_ca_without_a_subject_is_refused_by_the_spec_parser() -> None:
    with pytest.raises(SpecError) as caught:
        _spec(dnsNames=["ca.example"], isCA=True)
    assert str(caught.value).startswith("spec.commonName or spec.subject must be set when spec.isCA is true")
    assert _spec(dnsNames=["ca.example"], isCA=True, subject={"serialNumber": "7"}).has_subject


def test_a_self_signed_certificate_without_a_subject_is_refused_with_a_reason() -> None:
    """Its subject is its issuer name, and an empty issuer name breaks RFC 5280 (zlint e_issuer_field_empty)."""
    spec = _spec(dnsNames=["web.default.svc"], issuerRef={"name": "ca"})
    refusal = KINDS["selfSigned"].refusal(spec, "Issuer 'ca'")
    assert refusal is not None and refusal.reason == "EmptySubject"
    assert "set spec.commonName or spec.subject" in refusal.message
    assert KINDS["selfSigned"].refusal(_spec(commonName="web", issuerRef={"name": "ca"}), "Issuer 'ca'") is None
    assert KINDS["ca"].refusal(spec, "Issuer 'ca'") is None, "under a CA the issuer name is the CA's"


# --------------------------------------------------------------------------- admission and parser agree

_PARSERS: dict[str, Any] = {
    "Certificate": CertificateSpec.from_dict,
    "CertificateRequest": CertificateRequestSpec.from_dict,
}
_ISSUE_12 = [
    pytest.param(obj, expected, id=case)
    for case, obj, expected in INVALID_OBJECTS
    if expected.startswith(("spec.usages: '", "spec.commonName or spec.subject")) or "(RFC 8410)" in expected
]


def test_the_admission_cases_cover_every_usage_refusal() -> None:
    assert len(_ISSUE_12) >= 12


@pytest.mark.parametrize(("obj", "expected"), _ISSUE_12)
def test_what_admission_refuses_the_parser_refuses_with_the_same_words(obj: dict[str, Any], expected: str) -> None:
    """An object that reaches the operator without these CEL rules (an older CRD, a restore) still gets the
    same reason, in its Ready or InvalidRequest condition."""
    with pytest.raises(SpecError) as caught:
        _PARSERS[obj["kind"]](obj["spec"])
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    "obj", [pytest.param(o, id=i) for i, o in VALID_OBJECTS if o["kind"] in _PARSERS and "usages" in o["spec"]]
)
def test_what_admission_accepts_the_parser_accepts(obj: dict[str, Any]) -> None:
    _PARSERS[obj["kind"]](obj["spec"])
