"""Keystores for Java-style consumers (cert-manager's ``spec.keystores``): PKCS#12 and JKS, with a password.

- ``keystore.p12``: the private key and the chain (tls.crt) in one PKCS#12 file, key and certificates encrypted with
  PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) and a SHA-256 MAC, the password's; any current OpenSSL, Java 8u301+
  and Python's cryptography read it.
- ``keystore.jks``: the same key and chain as one private-key entry (alias ``certificate`` unless set). JKS is Java's
  own format (magic FEEDFEED, version 2): each key is protected with the JKS key protector (a SHA-1 keystream keyed
  by the password, salt and check digest, algorithm 1.3.6.1.4.1.42.2.17.1.1), and the file ends with a SHA-1 digest
  of the password, the string "Mighty Aphrodite" and the content. Written here from that description; the tests read
  what it writes with an independent JKS reader.

Both are rewritten at every issuance (fresh salts: the bytes differ each time even for the same key). The password
is never logged and never stored anywhere but inside these files' protection.

Pure: keys and certificates in, bytes out.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12

from certmint.pki.keys import PrivateKey

JKS_MAGIC = 0xFEEDFEED
JKS_VERSION = 2
_PRIVATE_KEY_ENTRY = 1
_JKS_KEY_PROTECTOR_OID = bytes.fromhex("060a2b060104012a02110101")  # DER of OID 1.3.6.1.4.1.42.2.17.1.1
_WHITENER = b"Mighty Aphrodite"


def pkcs12_keystore(key: PrivateKey, chain: Sequence[x509.Certificate], password: bytes, *, alias: str) -> bytes:
    """PKCS#12 with the key and ``chain`` (the leaf first), PBES2/AES-256 and an HMAC-SHA256 MAC."""
    encryption = (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(100_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password)
    )
    return pkcs12.serialize_key_and_certificates(alias.encode(), key, chain[0], list(chain[1:]) or None, encryption)


def _utf(text: str) -> bytes:
    """Java's DataOutput.writeUTF for the characters of aliases and "X.509" (modified UTF-8, 2-byte length)."""
    data = text.encode("utf-8")
    return struct.pack(">H", len(data)) + data


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(value)) + value


def _password_bytes(password: bytes) -> bytes:
    """The password as Java's JKS code feeds it to SHA-1: each char as two bytes, big-endian (UTF-16BE)."""
    return password.decode("utf-8").encode("utf-16-be")


def _protect_key(key: PrivateKey, password: bytes, salt: bytes) -> bytes:
    """The JKS key protector: PKCS#8 XOR a SHA-1 keystream over (password, previous digest) seeded with the salt,
    then SHA-1(password, PKCS#8) as the check; wrapped as an EncryptedPrivateKeyInfo."""
    plain = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    secret = _password_bytes(password)
    stream = bytearray()
    digest = salt
    while len(stream) < len(plain):
        digest = hashlib.sha1(secret + digest).digest()
        stream += digest
    encrypted = bytes(p ^ s for p, s in zip(plain, stream, strict=False))
    check = hashlib.sha1(secret + plain).digest()
    algorithm = _tlv(0x30, _JKS_KEY_PROTECTOR_OID + b"\x05\x00")
    return _tlv(0x30, algorithm + _tlv(0x04, salt + encrypted + check))


def _finish(entries: list[bytes], password: bytes) -> bytes:
    body = struct.pack(">III", JKS_MAGIC, JKS_VERSION, len(entries)) + b"".join(entries)
    return body + hashlib.sha1(_password_bytes(password) + _WHITENER + body).digest()


def _certificate(cert: x509.Certificate) -> bytes:
    der = cert.public_bytes(Encoding.DER)
    return _utf("X.509") + struct.pack(">I", len(der)) + der


def jks_keystore(
    key: PrivateKey, chain: Sequence[x509.Certificate], password: bytes, *, alias: str, now_ms: int | None = None
) -> bytes:
    """A JKS with one private-key entry: ``key`` and ``chain`` (the leaf first) under ``alias``."""
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    protected = _protect_key(key, password, os.urandom(20))
    entry = struct.pack(">I", _PRIVATE_KEY_ENTRY) + _utf(alias.lower()) + struct.pack(">Q", stamp)
    entry += struct.pack(">I", len(protected)) + protected
    entry += struct.pack(">I", len(chain)) + b"".join(_certificate(c) for c in chain)
    return _finish([entry], password)
