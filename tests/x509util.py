"""Certificates made by hand with cryptography, for every tier: the fields each one needs, once.

Only cryptography: the control plane's own PKI is made with this too, without the operator's package.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID


def common_name(text: str) -> x509.Name:
    """A name that is one commonName."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def certificate_builder(
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    *,
    issuer: x509.Name | None = None,
    serial: int | None = None,
) -> x509.CertificateBuilder:
    """Subject, issuer (the subject itself unless given), public key, serial (random unless given) and validity:
    the fields every certificate has; add extensions and sign."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number() if serial is None else serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
