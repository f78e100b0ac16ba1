"""pki.keystores: PKCS#12 read back by cryptography, JKS read back by an independent reader (pyjks, from PyPI)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jks
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12

from certmint.core.spec import CertificateSpec, Keystore, Keystores, SpecError
from certmint.pki.csr import CertificateTemplate, build_csr, parse_csr
from certmint.pki.keys import PrivateKey, generate_private_key
from certmint.pki.keystores import jks_keystore, pkcs12_keystore
from certmint.pki.signing import SigningAuthority, SigningRequest, sign
from tests.unit.builders import NOW, CAPair

PASSWORD = "s3cret-pässword".encode()


def _chain(root_ca: CAPair, key: PrivateKey) -> list[x509.Certificate]:
    request = SigningRequest(
        csr=parse_csr(build_csr(key, CertificateTemplate(dns_names=("web.shop.svc",)))),
        duration=timedelta(hours=1),
        usages=("digital signature", "server auth"),
        is_ca=False,
    )
    issued = sign(request, SigningAuthority.from_pem(root_ca.cert_pem, root_ca.key_pem, now=NOW), now=NOW)
    return [issued.certificate, root_ca.cert]


@pytest.mark.parametrize(("algorithm", "size"), [("ECDSA", 256), ("RSA", 2048), ("Ed25519", 0)])
def test_pkcs12_opens_with_the_password_and_holds_key_and_chain(root_ca: CAPair, algorithm: str, size: int) -> None:
    key = generate_private_key(algorithm, size)
    chain = _chain(root_ca, key)
    data = pkcs12_keystore(key, chain, PASSWORD, alias="web")
    loaded = pkcs12.load_pkcs12(data, PASSWORD)
    assert loaded.key is not None and loaded.cert is not None
    assert loaded.key.public_key() == key.public_key()  # type: ignore[comparison-overlap]
    assert loaded.cert.certificate == chain[0] and loaded.cert.friendly_name == b"web"
    assert [c.certificate for c in loaded.additional_certs] == chain[1:]
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(data, b"wrong")


@pytest.mark.parametrize(("algorithm", "size"), [("ECDSA", 256), ("RSA", 2048), ("Ed25519", 0)])
def test_jks_is_read_by_an_independent_reader(root_ca: CAPair, algorithm: str, size: int) -> None:
    key = generate_private_key(algorithm, size)
    chain = _chain(root_ca, key)
    store = jks.KeyStore.loads(jks_keystore(key, chain, PASSWORD, alias="Web"), PASSWORD.decode())
    assert store.store_type == "jks" and list(store.private_keys) == ["web"]  # Java lower-cases JKS aliases
    entry = store.private_keys["web"]
    assert entry.is_decrypted()
    assert entry.pkey_pkcs8 == key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    assert [der for _, der in entry.cert_chain] == [c.public_bytes(Encoding.DER) for c in chain]


def test_jks_refuses_the_wrong_password(root_ca: CAPair) -> None:
    key = generate_private_key("ECDSA", 256)
    data = jks_keystore(key, _chain(root_ca, key), PASSWORD, alias="certificate")
    with pytest.raises(jks.util.KeystoreSignatureException):
        jks.KeyStore.loads(data, "wrong")


def test_each_write_uses_a_fresh_salt(root_ca: CAPair) -> None:
    key = generate_private_key("ECDSA", 256)
    chain = _chain(root_ca, key)
    first, second = (jks_keystore(key, chain, PASSWORD, alias="a", now_ms=0) for _ in range(2))
    assert first != second


MINIMAL: dict[str, Any] = {"secretName": "web-tls", "issuerRef": {"name": "ca"}, "dnsNames": ["web"]}
REF = {"name": "web-keystore", "key": "password"}


def test_the_spec_reads_cert_managers_keystores() -> None:
    spec = CertificateSpec.from_dict(
        {
            **MINIMAL,
            "keystores": {
                "pkcs12": {"create": True, "passwordSecretRef": REF},
                "jks": {"create": True, "passwordSecretRef": REF, "alias": "tomcat"},
            },
        }
    )
    expected = Keystores(Keystore("web-keystore", "password"), Keystore("web-keystore", "password", "tomcat"))
    assert spec.keystores == expected
    off = CertificateSpec.from_dict({**MINIMAL, "keystores": {"pkcs12": {"create": False, "passwordSecretRef": REF}}})
    assert not off.keystores


def test_a_keystore_without_its_password_reference_is_refused() -> None:
    with pytest.raises(SpecError, match=r"spec\.keystores\.jks\.passwordSecretRef: is required"):
        CertificateSpec.from_dict({**MINIMAL, "keystores": {"jks": {"create": True}}})
