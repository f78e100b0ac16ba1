"""Small builders for unit-test objects: a fixed clock, cached keys, CAs, specs and issued certificates.

Keys are cached per (algorithm, size) for the session because RSA generation
is slow; tests that need a *different* key of the same type generate one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certmint.core.decisions import certificate_template
from certmint.core.spec import CertificateSpec
from certmint.pki.csr import build_csr, parse_csr
from certmint.pki.keys import PrivateKey, encode_private_key, generate_private_key, signature_hash
from certmint.pki.signing import IssuedCertificate, SigningAuthority, SigningRequest, sign
from tests.x509util import certificate_builder, common_name

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)

_KEYS: dict[tuple[str, int], PrivateKey] = {}


def cached_key(algorithm: str = "ECDSA", size: int = 256) -> PrivateKey:
    """One key per type for the whole session (RSA generation is slow)."""
    if (algorithm, size) not in _KEYS:
        _KEYS[(algorithm, size)] = generate_private_key(algorithm, size)
    return _KEYS[(algorithm, size)]


@dataclass(frozen=True)
class CAPair:
    cert: x509.Certificate
    key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return encode_private_key(self.key, "PKCS8")


def build_ca(
    name: str = "Test Root CA",
    *,
    key: PrivateKey | None = None,
    parent: CAPair | None = None,
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=365),
    ca: bool | None = True,
    key_cert_sign: bool | None = True,
    with_ski: bool = True,
) -> CAPair:
    """A CA certificate built directly with cryptography, so tests can make broken ones on purpose.

    ``ca=None`` omits basicConstraints; ``key_cert_sign=None`` omits KeyUsage.
    """
    key = key or generate_private_key("ECDSA", 256)
    issuer_name = parent.cert.subject if parent else None
    signer = parent.key if parent else key
    builder = certificate_builder(common_name(name), key.public_key(), not_before, not_after, issuer=issuer_name)
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if key_cert_sign is not None:
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=key_cert_sign,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )
        builder = builder.add_extension(usage, critical=True)
    if with_ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return CAPair(builder.sign(signer, signature_hash(signer)), key)


def certificate_spec(**overrides: Any) -> CertificateSpec:
    """A Certificate spec with sensible defaults, as a user would write it (camelCase keys)."""
    body: dict[str, Any] = {
        "secretName": "web-tls",
        "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"},
        "commonName": "web.default.svc",
        "dnsNames": ["web.default.svc", "web.default.svc.cluster.local"],
        "duration": "24h",
    }
    body.update(overrides)
    return CertificateSpec.from_dict(body)


def issue_for(
    spec: CertificateSpec, authority: SigningAuthority, *, key: PrivateKey | None = None, now: datetime = NOW
) -> tuple[IssuedCertificate, PrivateKey]:
    """Issue a certificate for ``spec`` exactly as the controller would."""
    key = key or generate_private_key(spec.private_key.algorithm, spec.private_key.size)
    csr = parse_csr(build_csr(key, certificate_template(spec)))
    request = SigningRequest(csr=csr, duration=spec.duration, usages=spec.usages, is_ca=spec.is_ca)
    return sign(request, authority, now=now), key
