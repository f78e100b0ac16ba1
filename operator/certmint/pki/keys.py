"""Private keys: generation, PEM encoding and loading, and algorithm identification.

Only the three key types certmint can issue for are accepted everywhere
(ECDSA on P-256/P-384/P-521, RSA, Ed25519); anything else is a PKIError so a
caller never has to special-case exotic keys further down.
"""

from __future__ import annotations

from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

ECDSA: Final = "ECDSA"
RSA: Final = "RSA"
ED25519: Final = "Ed25519"

#: Supported sizes per algorithm; Ed25519 has a fixed size, reported as 0 like cert-manager's spec does.
KEY_SIZES: Final[dict[str, frozenset[int]]] = {
    ECDSA: frozenset({256, 384, 521}),
    RSA: frozenset({2048, 3072, 4096}),
    ED25519: frozenset({0}),
}

_CURVES: Final[dict[int, ec.EllipticCurve]] = {
    256: ec.SECP256R1(),
    384: ec.SECP384R1(),
    521: ec.SECP521R1(),
}
_CURVE_NAMES: Final = frozenset(curve.name for curve in _CURVES.values())

PKCS1: Final = "PKCS1"
PKCS8: Final = "PKCS8"


class PKIError(ValueError):
    """Input that is not usable X.509 material (bad PEM, unsupported key, failed signature)."""


def generate_private_key(algorithm: str, size: int) -> PrivateKey:
    """Make a fresh key; RSA uses the public exponent 65537 as every client expects."""
    if algorithm == ECDSA:
        curve = _CURVES.get(size)
        if curve is None:
            raise PKIError(f"ECDSA key size {size} is not supported (use 256, 384 or 521)")
        return ec.generate_private_key(curve)
    if algorithm == RSA:
        if size not in KEY_SIZES[RSA]:
            raise PKIError(f"RSA key size {size} is not supported (use 2048, 3072 or 4096)")
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    if algorithm == ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    raise PKIError(f'key algorithm "{algorithm}" is not supported (use ECDSA, RSA or Ed25519)')


def encode_private_key(key: PrivateKey, encoding: str) -> bytes:
    """PEM-encode a key, unencrypted (it lives in a Kubernetes Secret).

    PKCS1 means the "traditional" per-algorithm format (``RSA PRIVATE KEY`` /
    SEC1 ``EC PRIVATE KEY``), as in cert-manager. Ed25519 has no such format,
    so it is always written as PKCS8 whatever the requested encoding.
    """
    if encoding not in (PKCS1, PKCS8):
        raise PKIError(f'private key encoding "{encoding}" is not supported (use PKCS1 or PKCS8)')
    if encoding == PKCS1 and not isinstance(key, ed25519.Ed25519PrivateKey):
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    else:
        fmt = serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def load_private_key(pem: bytes, *, check_rsa: bool = True) -> PrivateKey:
    """Load an unencrypted PEM key (PKCS1, SEC1 or PKCS8) of a supported type.

    ``check_rsa=False`` skips OpenSSL's RSA consistency check, which costs
    ~50 ms for RSA-2048 and ~400 ms for RSA-4096: fine for a key that is only
    compared with a certificate (its public half is all that matters), not for
    a key that will sign.
    """
    try:
        key: PrivateKeyTypes = serialization.load_pem_private_key(
            pem, password=None, unsafe_skip_rsa_key_validation=not check_rsa
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise PKIError(f"private key is not an unencrypted PEM key: {exc}") from exc
    return _supported_private_key(key)


def _supported_private_key(key: PrivateKeyTypes) -> PrivateKey:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in _CURVE_NAMES:
            raise PKIError(f"ECDSA curve {key.curve.name} is not supported (use P-256, P-384 or P-521)")
        return key
    if isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        return key
    raise PKIError(f"private key type {type(key).__name__} is not supported (use ECDSA, RSA or Ed25519)")


def supported_public_key(public_key: CertificatePublicKeyTypes) -> PublicKey:
    """Narrow a public key from a certificate or CSR to the supported types, or raise PKIError."""
    if isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        key_algorithm(public_key)  # rejects unsupported curves
        return public_key
    raise PKIError(f"public key type {type(public_key).__name__} is not supported (use ECDSA, RSA or Ed25519)")


def key_algorithm(public_key: CertificatePublicKeyTypes) -> tuple[str, int]:
    """The spec's (algorithm, size) for a key, e.g. ("ECDSA", 256); PKIError when unsupported."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in _CURVE_NAMES:
            raise PKIError(f"ECDSA curve {public_key.curve.name} is not supported")
        return ECDSA, public_key.curve.key_size
    if isinstance(public_key, rsa.RSAPublicKey):
        return RSA, public_key.key_size
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return ED25519, 0
    raise PKIError(f"public key type {type(public_key).__name__} is not supported")


def describe_public_key(public_key: CertificatePublicKeyTypes) -> tuple[str, int]:
    """Like key_algorithm, but never raises: for inspecting certificates certmint did not make."""
    try:
        return key_algorithm(public_key)
    except PKIError:
        size = getattr(public_key, "key_size", 0)
        name = type(public_key).__name__.removeprefix("_").removesuffix("PublicKey")
        return name, size if isinstance(size, int) else 0


def _spki_der(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def same_public_key(a: CertificatePublicKeyTypes, b: CertificatePublicKeyTypes) -> bool:
    """Compare two public keys by their SubjectPublicKeyInfo DER, the only type-independent way."""
    return _spki_der(a) == _spki_der(b)


def public_key_matches(private_key: PrivateKey, certificate: x509.Certificate) -> bool:
    """True when the certificate was issued for this key (a Secret must never pair mismatched halves)."""
    return same_public_key(private_key.public_key(), certificate.public_key())


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """Digest for signing with ``key``, sized to the key like Go's crypto/x509 does.

    P-384 signs with SHA-384 and P-521 with SHA-512 (a stronger curve behind
    SHA-256 would be wasted); RSA and P-256 use SHA-256; Ed25519 takes None
    because it hashes internally.
    """
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size == 521:
            return hashes.SHA512()
        if key.curve.key_size == 384:
            return hashes.SHA384()
    return hashes.SHA256()


def generate_private_key_pem(algorithm: str, size: int) -> bytes:
    """A new key as unencrypted PKCS#8 PEM: picklable, for generating keys in another process."""
    return encode_private_key(generate_private_key(algorithm, size), "PKCS8")
