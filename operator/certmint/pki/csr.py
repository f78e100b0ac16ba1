"""Building and reading PKCS#10 certificate signing requests.

A Certificate's issuance goes through a CSR just like a workload's own
CertificateRequest does, so policy and signing have one input shape
(CSRInfo) whatever the origin.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID, ObjectIdentifier

from certmint.pki.keys import (
    PKIError,
    PrivateKey,
    PublicKey,
    key_algorithm,
    signature_hash,
    supported_public_key,
)
from certmint.pki.names import SubjectNames, dedupe, normalize_dns_name, normalize_ip_address


@dataclass(frozen=True)
class CertificateTemplate:
    """The identity a certificate should carry; SANs as text, already normalised by the spec parser."""

    common_name: str | None = None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    email_addresses: tuple[str, ...] = ()
    subject: SubjectNames = field(default_factory=SubjectNames)


@dataclass(frozen=True)
class CSRInfo:
    """What a verified CSR asks for. SANs are normalised (see certmint.pki.names)."""

    subject: x509.Name
    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    uris: tuple[str, ...]
    email_addresses: tuple[str, ...]
    public_key: PublicKey
    key_algorithm: str
    key_size: int


def build_subject(common_name: str | None, subject: SubjectNames) -> x509.Name:
    """Distinguished name in Go's pkix order (C, O, OU, L, ST, street, postal code, serial, CN).

    cert-manager users see the same subject order they are used to.
    """
    pairs: list[tuple[ObjectIdentifier, Sequence[str]]] = [
        (NameOID.COUNTRY_NAME, subject.countries),
        (NameOID.ORGANIZATION_NAME, subject.organizations),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, subject.organizational_units),
        (NameOID.LOCALITY_NAME, subject.localities),
        (NameOID.STATE_OR_PROVINCE_NAME, subject.provinces),
        (NameOID.STREET_ADDRESS, subject.street_addresses),
        (NameOID.POSTAL_CODE, subject.postal_codes),
        (NameOID.SERIAL_NUMBER, (subject.serial_number,) if subject.serial_number else ()),
        (NameOID.COMMON_NAME, (common_name,) if common_name else ()),
    ]
    try:
        return x509.Name([x509.NameAttribute(oid, value) for oid, values in pairs for value in values])
    except ValueError as exc:  # e.g. a country that is not two letters, a CN over 64 characters
        raise PKIError(f"invalid subject: {exc}") from exc


def subject_alternative_names(
    dns_names: Sequence[str], ip_addresses: Sequence[str], uris: Sequence[str], email_addresses: Sequence[str]
) -> list[x509.GeneralName]:
    """GeneralNames in a stable order: DNS, IP, URI, email."""
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    names += [x509.UniformResourceIdentifier(uri) for uri in uris]
    names += [x509.RFC822Name(email) for email in email_addresses]
    return names


def build_csr(key: PrivateKey, template: CertificateTemplate) -> bytes:
    """A PEM CSR signed by ``key``.

    The SAN extension is omitted when there are no SANs (an empty one is
    invalid) and marked critical when the subject is empty, as RFC 5280 4.2.1.6 requires.
    """
    subject = build_subject(template.common_name, template.subject)
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    try:
        sans = subject_alternative_names(
            template.dns_names, template.ip_addresses, template.uris, template.email_addresses
        )
    except ValueError as exc:
        raise PKIError(f"invalid subject alternative name: {exc}") from exc
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=len(subject) == 0)
    csr = builder.sign(key, signature_hash(key))
    return csr.public_bytes(serialization.Encoding.PEM)


def parse_csr(pem: bytes) -> CSRInfo:
    """Load a PEM CSR, check its self-signature and key type, and extract what it asks for.

    The signature check proves the requester holds the private key; without it
    anyone could get a certificate for someone else's public key.
    """
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise PKIError(f"request is not a PEM-encoded PKCS#10 certificate signing request: {exc}") from exc
    try:
        signature_ok = csr.is_signature_valid
    except Exception as exc:  # cryptography raises various types for unsupported signature algorithms
        raise PKIError(f"the CSR signature cannot be checked: {exc}") from exc
    if not signature_ok:
        raise PKIError("the CSR signature does not verify: the request was altered or not signed by its key")
    try:
        public_key = supported_public_key(csr.public_key())
    except (ValueError, TypeError) as exc:
        raise PKIError(f"the CSR's public key is not supported: {exc}") from exc
    algorithm, size = key_algorithm(public_key)
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    except ValueError as exc:  # duplicate or malformed extensions
        raise PKIError(f"the CSR's extensions cannot be parsed: {exc}") from exc
    dns, ips, uris, emails = split_general_names(sans)
    return CSRInfo(
        subject=csr.subject,
        common_name=common_name_of(csr.subject),
        dns_names=dns,
        ip_addresses=ips,
        uris=uris,
        email_addresses=emails,
        public_key=public_key,
        key_algorithm=algorithm,
        key_size=size,
    )


def split_general_names(
    sans: x509.SubjectAlternativeName,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(dns, ip, uri, email) texts from a SAN extension, normalised, first-seen order, duplicates dropped."""
    dns = dedupe(normalize_dns_name(name) for name in sans.get_values_for_type(x509.DNSName))
    try:
        ips = dedupe(normalize_ip_address(str(ip)) for ip in sans.get_values_for_type(x509.IPAddress))
    except ValueError as exc:  # an IP network, which only belongs in name constraints
        raise PKIError(f"IP address SAN is not a single address: {exc}") from exc
    uris = dedupe(sans.get_values_for_type(x509.UniformResourceIdentifier))
    emails = dedupe(sans.get_values_for_type(x509.RFC822Name))
    return dns, ips, uris, emails


def common_name_of(name: x509.Name) -> str | None:
    """The (last, most specific) common name of a distinguished name, or None."""
    attributes = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attributes:
        return None
    value = attributes[-1].value
    return value.decode() if isinstance(value, bytes) else value
