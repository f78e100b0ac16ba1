"""The judges can say no: each verifier of the tier refuses a certificate that is wrong in its own way.

Certificates here come from certmint's PKI core (``certmint.pki.signing`` through tests/unit/builders.py)
and from cryptography directly, never from the operator: no control plane, a second or two in all. Without
these, a verifier tier that passes could mean verifiers that never look.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from certmint.pki.keys import PrivateKey, encode_private_key, generate_private_key, signature_hash
from certmint.pki.signing import IssuedCertificate, SigningAuthority
from tests.unit.builders import CAPair, build_ca, certificate_spec, issue_for
from tests.verifiers.verify import TLSFiles, handshake, lint, openssl_verify
from tests.x509util import certificate_builder, common_name

pytestmark = pytest.mark.verifiers

NOW = datetime.now(UTC)
HOST = "server.instruments.test"  # dotted: pkilint's domain check refuses single labels such as localhost


@dataclass(frozen=True)
class Issued:
    issued: IssuedCertificate
    key: PrivateKey

    def secret(self) -> dict[str, bytes]:
        """The three keys certmint writes into the Secret."""
        return {
            "tls.crt": self.issued.chain_pem,
            "tls.key": encode_private_key(self.key, "PKCS8"),
            "ca.crt": self.issued.ca_pem,
        }


def _ca(name: str, parent: CAPair | None = None) -> CAPair:
    return build_ca(name, parent=parent, not_before=NOW - timedelta(hours=1), not_after=NOW + timedelta(days=1))


def _issue(authority: SigningAuthority, **spec: Any) -> Issued:
    body = {"commonName": HOST, "dnsNames": [HOST], "ipAddresses": ["127.0.0.1"]} | spec
    issued, key = issue_for(certificate_spec(**body), authority, now=NOW)
    return Issued(issued, key)


@pytest.fixture(scope="module")
def root() -> CAPair:
    return _ca("instruments root")


@pytest.fixture(scope="module")
def authority(root: CAPair) -> SigningAuthority:
    return SigningAuthority(certificate=root.cert, key=root.key)


def test_pkilint_accepts_a_clean_leaf_and_flags_rfc_violations(root: CAPair, authority: SigningAuthority) -> None:
    clean = _issue(authority, usages=["digital signature", "server auth", "client auth"])
    result = lint(clean.issued.certificate, root.cert)
    assert not result.errors and not result.warnings, [str(f) for f in result.findings]

    # RFC 8813: an ECDSA key must not be asserted for key encipherment (made by hand: certmint refuses it now).
    key = generate_private_key("ECDSA", 256)
    enciphering = x509.KeyUsage(True, False, True, False, False, False, False, False, False)
    hour = NOW + timedelta(hours=1)
    ecdsa_enciphering = (
        certificate_builder(common_name(HOST), key.public_key(), NOW, hour, issuer=root.cert.subject)
        .add_extension(enciphering, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(root.key, signature_hash(root.key))
    )
    codes = {f.code for f in lint(ecdsa_enciphering, root.cert).errors}
    assert codes == {"pkix.key_usage_value_prohibited_for_ec"}, codes

    # RFC 5280 4.1.2.4: the issuer field must be non-empty; the chain linter sees the names do not chain.
    nameless = (
        certificate_builder(x509.Name([]), key.public_key(), NOW, hour)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=True)
        .sign(key, signature_hash(key))
    )
    codes = {f.code for f in lint(nameless).errors}
    assert "pkix.name_empty" in codes, codes
    chained = lint(clean.issued.certificate, _ca("another root").cert)
    assert chained.errors, "the chain linter accepted a leaf under a CA that did not sign it"

    # A SPIFFE ID is set aside from pkilint's web-only URI check; a malformed URI of the same scheme is not.
    spiffe = _issue(authority, uris=["spiffe://cluster.local/ns/team-a/sa/web"], usages=["digital signature"])
    result = lint(spiffe.issued.certificate, root.cert)
    assert not result.errors and [f.code for f in result.set_aside] == ["pkix.invalid_uri_syntax"], result
    malformed = (
        certificate_builder(common_name("malformed"), key.public_key(), NOW, hour, issuer=root.cert.subject)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://cluster local/ns/a")]),
            critical=False,
        )
        .sign(root.key, signature_hash(root.key))
    )
    codes = {f.code for f in lint(malformed).errors}
    assert "pkix.invalid_uri_syntax" in codes, codes


def test_openssl_verify_needs_the_root_and_the_purpose_the_usages_allow(root: CAPair) -> None:
    # The intermediate as certmint's signer makes it (it carries an authority key identifier, which
    # -x509_strict requires), the root in its chain as in a Secret whose tls.crt holds both.
    intermediate = _issue(
        SigningAuthority(certificate=root.cert, key=root.key),
        commonName="instruments intermediate",
        dnsNames=[],
        ipAddresses=[],
        isCA=True,
        usages=["digital signature", "cert sign", "crl sign"],
    )
    under_intermediate = SigningAuthority(
        certificate=intermediate.issued.certificate, key=intermediate.key, chain=(root.cert,)
    )
    leaf = _issue(under_intermediate, usages=["digital signature", "server auth"])
    tls_crt = leaf.issued.chain_pem
    root_pem, intermediate_pem = root.cert_pem, intermediate.issued.certificate_pem
    assert leaf.issued.ca_pem == root_pem

    assert openssl_verify(tls_crt, root_pem, "sslserver").ok
    # Trusting the intermediate instead of the root (issue 12, defect 1): no self-signed anchor.
    wrong_anchor = openssl_verify(tls_crt, intermediate_pem, "sslserver")
    assert not wrong_anchor.ok and "unable to get issuer certificate" in wrong_anchor.detail, wrong_anchor
    # A server-auth leaf is no client certificate.
    wrong_purpose = openssl_verify(tls_crt, root_pem, "sslclient")
    assert not wrong_purpose.ok and "unsuitable certificate purpose" in wrong_purpose.detail, wrong_purpose

    # A CA constrained to TLS by its EKU (issue 12, defect 3) spoils an S/MIME leaf below it.
    key = generate_private_key("ECDSA", 256)
    tls_only = (
        certificate_builder(
            common_name("tls-only CA"), key.public_key(), NOW - timedelta(hours=1), NOW + timedelta(days=1)
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, signature_hash(key))
    )
    mail = _issue(
        SigningAuthority(certificate=tls_only, key=key),
        commonName=None,
        dnsNames=[],
        ipAddresses=[],
        emailAddresses=["alice@example.com"],
        usages=["digital signature", "email protection"],
    )
    tls_only_pem = tls_only.public_bytes(Encoding.PEM)
    refused = openssl_verify(mail.issued.chain_pem, tls_only_pem, "smimesign")
    assert not refused.ok and "unsuitable certificate purpose" in refused.detail, refused


def test_handshake_verifies_names_and_anchors_on_both_sides(
    tmp_path: Path, root: CAPair, authority: SigningAuthority
) -> None:
    both = ["digital signature", "server auth", "client auth"]
    server = TLSFiles.write(tmp_path, "server", _issue(authority, usages=both, ipAddresses=["::1"]).secret())
    client = TLSFiles.write(tmp_path, "client", _issue(authority, usages=both).secret())
    for name in (HOST, "::1"):
        outcome = handshake(server, client, name)
        assert outcome.ok, outcome

    wrong_name = handshake(server, client, "elsewhere.example")
    assert not wrong_name.ok and "Hostname mismatch" in wrong_name.detail, wrong_name
    wrong_ip = handshake(server, client, "127.0.0.2")
    assert not wrong_ip.ok and "IP address mismatch" in wrong_ip.detail, wrong_ip

    other_root = _ca("stranger root")
    stranger = _issue(SigningAuthority(certificate=other_root.cert, key=other_root.key), usages=both)
    stranger_files = TLSFiles.write(tmp_path, "stranger", stranger.secret())
    # The server refuses a client of a CA it does not trust (the client trusts the server's CA: its ca.crt swapped).
    mixed = TLSFiles(stranger_files.tls_crt, stranger_files.tls_key, server.ca_crt)
    refused = handshake(server, mixed, HOST)
    assert not refused.ok and "server: " in refused.detail, refused

    server_only = TLSFiles.write(
        tmp_path, "server-only", _issue(authority, usages=["digital signature", "server auth"]).secret()
    )
    # A server-auth-only certificate is refused as a client certificate (purpose sslclient).
    not_a_client = handshake(server, server_only, HOST)
    assert not not_a_client.ok and "server: " in not_a_client.detail, not_a_client
