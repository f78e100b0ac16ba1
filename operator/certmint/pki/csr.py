"""Building and reading PKCS#10 certificate signing requests.

A Certificate's issuance goes through a CSR just like a workload's own
CertificateRequest does, so policy and signing have one input shape
(an Identity; a CSR's is a CSRInfo) whatever the origin.

parse_csr reduces a CSR to values a policy can judge, and refuses what it
cannot: a subject with repeated or unknown attributes or multi-valued RDNs,
names a TLS client could read differently from the policy (trailing dots,
empty labels, spaces, invalid SPIFFE IDs), and SAN types other than DNS, IP,
URI and email. The signer then builds the certificate from those values
alone (build_subject, subject_alternative_names), never from the CSR's
encoding, so the certificate carries exactly what the policy judged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

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
from certmint.pki.names import (
    SUBJECT_ATTRIBUTES,
    Identity,
    SubjectNames,
    canonical_dns_name,
    check_common_name,
    check_email_address,
    check_text_attribute,
    check_uri,
    dedupe,
    normalize_dns_name,
    normalize_ip_address,
    quote,
)


class UnjudgeableRequest(PKIError):
    """A well-formed CSR that asks for something no policy can judge (a second CN, an otherName SAN...).

    Distinct from a malformed CSR (plain PKIError): the request is *denied*, not invalid.
    """


#: The name build_csr's callers outside pki knew Identity by; new code writes Identity.
CertificateTemplate = Identity


@dataclass(frozen=True, slots=True)
class CSRInfo(Identity):
    """What a verified CSR asks for: the identity, as validated values (see parse_csr), and the public key.

    There is deliberately no x509.Name here: the certificate's subject is
    built from ``common_name`` and ``subject`` (build_subject).
    """

    public_key: PublicKey
    key_algorithm: str
    key_size: int


#: The subject attributes a CSR may carry, by OID, with the short names messages use. Anything else is refused.
_SUBJECT_ATTRIBUTES: Final = {**{a.oid: a.short for a in SUBJECT_ATTRIBUTES}, NameOID.COMMON_NAME: "CN"}
#: Attributes that may appear at most once (SubjectNames holds one serial number; a TLS client reads one CN).
_SINGLE_VALUED: Final = (NameOID.COMMON_NAME, *(a.oid for a in SUBJECT_ATTRIBUTES if a.single))
#: SAN types a policy judges (DNS, IP, URI, email); the names of the others for messages (RFC 5280 GeneralName).
_JUDGED_SAN_TYPES: Final = (x509.DNSName, x509.IPAddress, x509.UniformResourceIdentifier, x509.RFC822Name)
_SAN_TYPE_NAMES: Final[dict[type[x509.GeneralName], str]] = {
    x509.OtherName: "otherName",
    x509.DirectoryName: "directoryName",
    x509.RegisteredID: "registeredID",
}


def build_subject(common_name: str | None, subject: SubjectNames) -> x509.Name:
    """Distinguished name in Go's pkix order (C, O, OU, L, ST, street, postal code, serial, CN).

    cert-manager users see the same subject order they are used to.
    """
    pairs: list[tuple[ObjectIdentifier, Sequence[str]]] = [(a.oid, subject.values(a)) for a in SUBJECT_ATTRIBUTES]
    pairs.append((NameOID.COMMON_NAME, (common_name,) if common_name else ()))
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


def build_csr(key: PrivateKey, template: Identity) -> bytes:
    """A PEM CSR signed by ``key`` asking for ``template`` (a Certificate's spec is one).

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

    PKIError when the CSR is malformed; UnjudgeableRequest (a PKIError) when
    it is well-formed but asks for what a policy cannot judge.

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
    common_name, subject = judged_subject(csr.subject)
    dns, ips, uris, emails = judged_general_names(sans)
    if not (common_name or dns or ips or uris or emails):
        raise UnjudgeableRequest(
            "the CSR asks for no identity: set a common name or at least one subject alternative name"
        )
    return CSRInfo(
        common_name=common_name,
        subject=subject,
        dns_names=dns,
        ip_addresses=ips,
        uris=uris,
        email_addresses=emails,
        public_key=public_key,
        key_algorithm=algorithm,
        key_size=size,
    )


def judged_subject(name: x509.Name) -> tuple[str | None, SubjectNames]:
    """The common name and other attributes of a CSR's subject, or PKIError when a policy could not judge it.

    Refused: attributes other than C, O, OU, L, ST, street, postalCode,
    serialNumber and CN; more than one CN or serialNumber; multi-valued RDNs
    (one RDN holding several attributes); empty, padded or control-character
    values; a CN that is not canonical (see names.check_common_name).
    """
    values: dict[x509.ObjectIdentifier, list[str]] = {oid: [] for oid in _SUBJECT_ATTRIBUTES}
    for rdn in name.rdns:
        if len(rdn) != 1:
            shown = "+".join(_attribute_name(a.oid) for a in rdn)
            raise UnjudgeableRequest(f"the CSR's subject has a multi-valued RDN ({shown}); write one attribute per RDN")
        (attribute,) = rdn
        short = _SUBJECT_ATTRIBUTES.get(attribute.oid)
        if short is None:
            allowed = ", ".join(_SUBJECT_ATTRIBUTES.values())
            raise UnjudgeableRequest(
                f"the CSR's subject attribute {_attribute_name(attribute.oid)} is not supported (allowed: {allowed})"
            )
        value = attribute.value
        if not isinstance(value, str):
            raise UnjudgeableRequest(f"the CSR's subject attribute {short} is not text")
        try:
            if attribute.oid == NameOID.COMMON_NAME:
                check_common_name(value)
            else:
                check_text_attribute(value)
        except ValueError as exc:
            detail = str(exc) if attribute.oid == NameOID.COMMON_NAME else f"is not accepted: {exc}"
            raise UnjudgeableRequest(f"the CSR's subject attribute {short} {quote(value)} {detail}") from None
        values[attribute.oid].append(value)
    for oid in _SINGLE_VALUED:
        if len(values[oid]) > 1:
            what = "common name" if oid == NameOID.COMMON_NAME else _SUBJECT_ATTRIBUTES[oid]
            listed = ", ".join(quote(v) for v in values[oid])
            raise UnjudgeableRequest(
                f"the CSR's subject has more than one {what} ({listed}); a certificate carries one"
            )
    countries = values[NameOID.COUNTRY_NAME]
    for country in countries:
        if len(country) != 2 or not country.isascii() or not country.isalpha():
            raise UnjudgeableRequest(f"the CSR's subject attribute C {quote(country)} is not a two-letter country code")
    common_names = values[NameOID.COMMON_NAME]
    return (common_names[0] if common_names else None), SubjectNames.from_values(lambda a: values[a.oid])


def _attribute_name(oid: x509.ObjectIdentifier) -> str:
    """A short name for messages: "CN", "UID", "DC", else the dotted OID."""
    short = _SUBJECT_ATTRIBUTES.get(oid)
    if short is not None:
        return short
    known = {NameOID.USER_ID: "UID", NameOID.DOMAIN_COMPONENT: "DC", NameOID.TITLE: "title"}
    return known.get(oid, oid.dotted_string)


def judged_general_names(
    sans: x509.SubjectAlternativeName,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(dns, ip, uri, email) of a CSR's SAN extension, validated and normalised; PKIError for what cannot be judged.

    Only DNS, IP, URI and email SANs are accepted; DNS names must be
    canonical (lower-casing is the one normalisation), URIs absolute (and
    valid SPIFFE IDs when spiffe://), emails local@domain.
    """
    for general_name in sans:
        if not isinstance(general_name, _JUDGED_SAN_TYPES):
            label = _SAN_TYPE_NAMES.get(type(general_name), type(general_name).__name__)
            raise UnjudgeableRequest(
                f"the CSR has a {label} subject alternative name, which this issuer cannot judge "
                "(allowed types: DNS, IP address, URI, email)"
            )
    dns_names = []
    for name in sans.get_values_for_type(x509.DNSName):
        try:
            dns_names.append(canonical_dns_name(name))
        except ValueError as exc:
            raise UnjudgeableRequest(f"the CSR's DNS name {quote(name)} is not canonical: {exc}") from None
    for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
        try:
            check_uri(uri)
        except ValueError as exc:
            raise UnjudgeableRequest(f"the CSR's URI {quote(uri)} {exc}") from None
    for email in sans.get_values_for_type(x509.RFC822Name):
        try:
            check_email_address(email)
        except ValueError as exc:
            raise UnjudgeableRequest(f"the CSR's email address {quote(email)} {exc}") from None
    _, ips, uris, emails = split_general_names(sans)
    return dedupe(dns_names), ips, uris, emails


def split_general_names(
    sans: x509.SubjectAlternativeName,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(dns, ip, uri, email) texts from a SAN extension, normalised, first-seen order, duplicates dropped.

    Lenient: for reading certificates back (certmint.pki.inspect). A CSR goes through judged_general_names.
    """
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
