"""core.outputs: cert-manager's additionalOutputFormats, derived from tls.key and tls.crt."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, load_der_private_key

from certmint.core.outputs import additional_outputs, key_der, outputs_difference
from certmint.core.spec import CertificateSpec, SpecError
from certmint.pki.keys import encode_private_key, generate_private_key

CHAIN = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(("algorithm", "size", "encoding"), [("ECDSA", 256, "PKCS1"), ("RSA", 2048, "PKCS8")])
def test_key_der_is_tls_keys_own_encoding_in_binary(algorithm: str, size: int, encoding: str) -> None:
    key = generate_private_key(algorithm, size)
    der = key_der(encode_private_key(key, encoding))
    fmt = PrivateFormat.TraditionalOpenSSL if encoding == "PKCS1" else PrivateFormat.PKCS8
    assert der == key.private_bytes(Encoding.DER, fmt, NoEncryption())
    assert load_der_private_key(der, password=None).public_key() == key.public_key()


def test_outputs_are_written_for_the_formats_asked_and_removed_otherwise() -> None:
    key_pem = encode_private_key(generate_private_key("ECDSA", 256), "PKCS8")
    assert additional_outputs((), key_pem, CHAIN) == {"tls-combined.pem": None, "key.der": None}
    both = additional_outputs(("DER", "CombinedPEM"), key_pem, CHAIN)
    assert both["tls-combined.pem"] == key_pem + CHAIN
    assert both["key.der"] == key_der(key_pem)


def test_differences_name_what_is_missing_stale_or_left_over() -> None:
    key_pem = encode_private_key(generate_private_key("ECDSA", 256), "PKCS1")
    good = {k: v for k, v in additional_outputs(("CombinedPEM",), key_pem, CHAIN).items() if v is not None}
    assert outputs_difference(("CombinedPEM",), key_pem, CHAIN, good) is None
    assert outputs_difference((), key_pem, CHAIN, {}) is None
    missing = outputs_difference(("CombinedPEM", "DER"), key_pem, CHAIN, good)
    assert missing == "key.der is missing (spec.additionalOutputFormats: DER)"
    stale = outputs_difference(("CombinedPEM",), key_pem, CHAIN, {"tls-combined.pem": b"old"})
    assert stale == "tls-combined.pem is not tls.key and tls.crt in the CombinedPEM format"
    left = outputs_difference((), key_pem, CHAIN, good)
    assert left == "it holds tls-combined.pem, which spec.additionalOutputFormats does not ask for (CombinedPEM)"


MINIMAL: dict[str, Any] = {"secretName": "web-tls", "issuerRef": {"name": "ca"}, "dnsNames": ["web"]}


def test_the_spec_keeps_the_formats_in_order() -> None:
    spec = CertificateSpec.from_dict({**MINIMAL, "additionalOutputFormats": [{"type": "DER"}, {"type": "CombinedPEM"}]})
    assert spec.additional_output_formats == ("DER", "CombinedPEM")
    assert CertificateSpec.from_dict(MINIMAL).additional_output_formats == ()


@pytest.mark.parametrize(
    ("formats", "message"),
    [
        ([{"type": "PKCS12"}], 'spec.additionalOutputFormats[0].type: "PKCS12" is not one of CombinedPEM, DER'),
        ([{"type": "DER"}, {"type": "DER"}], 'spec.additionalOutputFormats[1].type: "DER" is listed twice'),
        ([{}], "spec.additionalOutputFormats[0].type: is required"),
        ({"type": "DER"}, "spec.additionalOutputFormats: must be a list"),
    ],
)
def test_bad_formats_are_refused(formats: Any, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        CertificateSpec.from_dict({**MINIMAL, "additionalOutputFormats": formats})
    assert message in str(caught.value)
