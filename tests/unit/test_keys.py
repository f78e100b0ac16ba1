"""Private keys: every supported algorithm and size, both encodings, loading and matching."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from certmint.pki.keys import (
    PKIError,
    PrivateKey,
    encode_private_key,
    generate_private_key,
    key_algorithm,
    load_private_key,
    public_key_matches,
)

ALL_KEY_TYPES = [
    ("ECDSA", 256),
    ("ECDSA", 384),
    ("ECDSA", 521),
    ("RSA", 2048),
    ("RSA", 3072),
    ("RSA", 4096),
    ("Ed25519", 0),
]


@pytest.mark.parametrize(("algorithm", "size"), ALL_KEY_TYPES)
def test_generated_keys_have_the_requested_type(
    key_of: Callable[[str, int], PrivateKey], algorithm: str, size: int
) -> None:
    key = key_of(algorithm, size)  # session-cached: RSA 4096 is generated once for the whole suite
    assert key_algorithm(key.public_key()) == (algorithm, size)
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.public_key().public_numbers().e == 65537


@pytest.mark.parametrize(("algorithm", "size"), ALL_KEY_TYPES)
@pytest.mark.parametrize("encoding", ["PKCS1", "PKCS8"])
def test_encode_load_round_trip(
    key_of: Callable[[str, int], PrivateKey], algorithm: str, size: int, encoding: str
) -> None:
    key = key_of(algorithm, size)
    pem = encode_private_key(key, encoding)
    loaded = load_private_key(pem, check_rsa=size < 4096)  # the full RSA check is slow for 4096
    assert key_algorithm(loaded.public_key()) == (algorithm, size)
    same = serialization.PublicFormat.SubjectPublicKeyInfo
    assert loaded.public_key().public_bytes(serialization.Encoding.DER, same) == key.public_key().public_bytes(
        serialization.Encoding.DER, same
    )


@pytest.mark.parametrize(
    ("algorithm", "size", "encoding", "header"),
    [
        ("RSA", 2048, "PKCS1", b"-----BEGIN RSA PRIVATE KEY-----"),
        ("RSA", 2048, "PKCS8", b"-----BEGIN PRIVATE KEY-----"),
        ("ECDSA", 256, "PKCS1", b"-----BEGIN EC PRIVATE KEY-----"),
        ("ECDSA", 256, "PKCS8", b"-----BEGIN PRIVATE KEY-----"),
        ("Ed25519", 0, "PKCS8", b"-----BEGIN PRIVATE KEY-----"),
        ("Ed25519", 0, "PKCS1", b"-----BEGIN PRIVATE KEY-----"),  # no PKCS1 form exists: PKCS8 instead
    ],
)
def test_encodings_use_the_expected_pem_type(
    key_of: Callable[[str, int], PrivateKey], algorithm: str, size: int, encoding: str, header: bytes
) -> None:
    assert encode_private_key(key_of(algorithm, size), encoding).startswith(header)


def test_unsupported_requests_are_pki_errors() -> None:
    with pytest.raises(PKIError, match="ECDSA key size 255"):
        generate_private_key("ECDSA", 255)
    with pytest.raises(PKIError, match="RSA key size 1024"):
        generate_private_key("RSA", 1024)
    with pytest.raises(PKIError, match='key algorithm "DSA"'):
        generate_private_key("DSA", 2048)
    with pytest.raises(PKIError, match="encoding"):
        encode_private_key(generate_private_key("ECDSA", 256), "DER")


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"garbage",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_load_rejects_garbage(pem: bytes) -> None:
    with pytest.raises(PKIError, match="not an unencrypted PEM key"):
        load_private_key(pem)


def test_load_rejects_encrypted_keys() -> None:
    key = generate_private_key("ECDSA", 256)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(PKIError):
        load_private_key(pem)


def test_load_rejects_unsupported_key_types() -> None:
    k1 = ec.generate_private_key(ec.SECP256K1())
    pem = k1.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(PKIError, match="secp256k1"):
        load_private_key(pem)
    pem = ed448.Ed448PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(PKIError, match="not supported"):
        load_private_key(pem)
    with pytest.raises(PKIError):
        key_algorithm(ed448.Ed448PrivateKey.generate().public_key())


def test_public_key_matches_only_its_own_certificate(make_ca: Callable[..., Any]) -> None:
    key = generate_private_key("ECDSA", 256)
    other = generate_private_key("ECDSA", 256)
    ca = make_ca("Match Test", key=key)
    assert public_key_matches(key, ca.cert)
    assert not public_key_matches(other, ca.cert)
    assert not public_key_matches(ed25519.Ed25519PrivateKey.generate(), ca.cert)
