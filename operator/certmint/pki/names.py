"""Subject names and SAN normalisation shared by CSRs, signing and inspection.

The spec side (what a user asked for) and the certificate side (what a Secret
holds) must be compared as sets of equal strings. Both sides therefore pass
every SAN through the same normalisers defined here, so "Web.Example.COM" and
"web.example.com", or "::0001" and "::1", never look like a spec change.

The ``canonical_*`` / ``check_*`` validators are the other half: what a
policy can judge. A name that a TLS client would read differently from the
policy (a trailing dot, an empty label, a stray space, a SPIFFE ID that is no
SPIFFE ID) is refused with a reason rather than signed, on both paths into
signing (a Certificate's spec and a workload's CSR).
"""

from __future__ import annotations

import ipaddress
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from cryptography.x509.oid import NameOID, ObjectIdentifier


@dataclass(frozen=True, slots=True)
class SubjectNames:
    """Distinguished-name attributes besides the common name (cert-manager's ``subject`` block).

    Kept in the PKI layer so that CSR building does not depend on how the
    Kubernetes spec is parsed; ``certmint.core.spec.SubjectSpec`` is this class.
    """

    organizations: tuple[str, ...] = ()
    organizational_units: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    localities: tuple[str, ...] = ()
    provinces: tuple[str, ...] = ()
    street_addresses: tuple[str, ...] = ()
    postal_codes: tuple[str, ...] = ()
    serial_number: str | None = None

    def values(self, attribute: SubjectAttribute) -> tuple[str, ...]:
        """The values of one kind of attribute (the serial number as a tuple of at most one)."""
        value = getattr(self, attribute.field)
        if attribute.single:
            return (value,) if value else ()
        return tuple(value)

    @classmethod
    def from_values(cls, values: Callable[[SubjectAttribute], Iterable[str]]) -> SubjectNames:
        """The subject holding ``values(attribute)`` for each kind in SUBJECT_ATTRIBUTES (the first serial number)."""
        fields: dict[str, Any] = {}
        for attribute in SUBJECT_ATTRIBUTES:
            found = tuple(values(attribute))
            fields[attribute.field] = (found[0] if found else None) if attribute.single else found
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class SubjectAttribute:
    """One kind of subject attribute besides the common name, with every name the layers know it by."""

    #: the SubjectNames field, e.g. "organizational_units"
    field: str
    #: the key in a Certificate's ``spec.subject``, e.g. "organizationalUnits"
    key: str
    oid: ObjectIdentifier
    #: as a distinguished name writes it, e.g. "OU"
    short: str
    #: one value of it in messages, e.g. "organizational unit"
    noun: str
    #: at most one value (the serial number)
    single: bool = False


#: The subject attributes SubjectNames holds, in the order Go's pkix (and so cert-manager) writes a subject.
#: Building, reading, parsing and judging a subject all go through this table.
SUBJECT_ATTRIBUTES: Final = (
    SubjectAttribute("countries", "countries", NameOID.COUNTRY_NAME, "C", "country"),
    SubjectAttribute("organizations", "organizations", NameOID.ORGANIZATION_NAME, "O", "organization"),
    SubjectAttribute(
        "organizational_units", "organizationalUnits", NameOID.ORGANIZATIONAL_UNIT_NAME, "OU", "organizational unit"
    ),
    SubjectAttribute("localities", "localities", NameOID.LOCALITY_NAME, "L", "locality"),
    SubjectAttribute("provinces", "provinces", NameOID.STATE_OR_PROVINCE_NAME, "ST", "province"),
    SubjectAttribute("street_addresses", "streetAddresses", NameOID.STREET_ADDRESS, "street", "street address"),
    SubjectAttribute("postal_codes", "postalCodes", NameOID.POSTAL_CODE, "postalCode", "postal code"),
    SubjectAttribute("serial_number", "serialNumber", NameOID.SERIAL_NUMBER, "serialNumber", "serialNumber", True),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """What a certificate certifies: a common name, the other subject attributes, and four SAN lists.

    Declared once. Everything that carries an identity *is* one: a Certificate's
    spec (``certmint.core.spec.CertificateSpec``), a verified CSR
    (``certmint.pki.csr.CSRInfo``) and a signed certificate
    (``certmint.pki.inspect.CertificateFacts``) extend it, ``build_csr`` takes
    one, and what a policy judges (``certmint.core.policy.RequestedIdentity``)
    holds one, so no code copies these fields from one shape to another.
    SANs are text, normalised with the functions below.
    """

    common_name: str | None = None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    email_addresses: tuple[str, ...] = ()
    subject: SubjectNames = field(default_factory=SubjectNames)

    @property
    def has_subject(self) -> bool:
        """Whether the subject name has any attribute (the common name or another): a CA's must, and so must a
        self-signed certificate's, whose subject is also its issuer name (RFC 5280)."""
        return bool(self.common_name) or self.subject != _NO_SUBJECT


_NO_SUBJECT: Final = SubjectNames()

#: One DNS label: letters, digits and hyphens, not starting or ending with a hyphen, 1-63 characters (RFC 1123).
_LDH_LABEL: Final = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
#: Characters a host name is written with; a common name made only of these is read as a host name by TLS clients.
_HOST_CHARACTERS: Final = re.compile(r"[A-Za-z0-9.*-]+")
#: The SPIFFE ID spec (spiffe.io, "SPIFFE-ID"): lower-case trust domain; path segments of [A-Za-z0-9._-].
SPIFFE_TRUST_DOMAIN: Final = re.compile(r"[a-z0-9._-]+")
SPIFFE_PATH_SEGMENT: Final = re.compile(r"[A-Za-z0-9._-]+")
SPIFFE_SCHEME: Final = "spiffe"
#: The longest a subject attribute may be (RFC 5280's upper bounds are 64-200; 200 covers them all).
MAX_ATTRIBUTE_LENGTH: Final = 200


def canonical_dns_name(name: str) -> str:
    """The lower-cased DNS name, or ValueError saying why it is not one a policy can judge.

    Canonical means what TLS clients compare: LDH labels of 1-63 characters,
    at most 253 in all, an optional "*" as the whole leftmost label (a
    wildcard), no trailing dot, no empty label, no spaces or other
    characters. Lower-casing is the only change made (DNS is
    case-insensitive, RFC 4343); anything else is refused, not repaired.
    """
    if not name:
        raise ValueError("it is empty")
    if any(c.isspace() for c in name):
        raise ValueError("it contains whitespace")
    if not name.isascii():
        raise ValueError("it is not ASCII (write internationalised names in punycode, xn--...)")
    lowered = name.lower()
    if len(lowered) > 253:
        raise ValueError("it is longer than 253 characters")
    if lowered.endswith("."):
        raise ValueError("it has a trailing dot")
    labels = lowered.split(".")
    if labels[0] == "*":
        if len(labels) < 2:
            raise ValueError('a wildcard "*" must be followed by a domain, e.g. "*.example.com"')
        labels = labels[1:]
    for label in labels:
        if not label:
            raise ValueError("it has an empty label (two dots in a row)")
        if "*" in label:
            raise ValueError('a wildcard "*" may only be the whole leftmost label, e.g. "*.example.com"')
        if len(label) > 63:
            raise ValueError(f"label {quote(label)} is longer than 63 characters")
        if not _LDH_LABEL.fullmatch(label):
            raise ValueError(
                f"label {quote(label)} is not letters, digits and inner hyphens (no underscores or other characters)"
            )
    return lowered


def check_text_attribute(value: str) -> str:
    """A subject attribute value as written, or ValueError when it is empty, padded or has control characters."""
    if not value:
        raise ValueError("it is empty")
    if value != value.strip():
        raise ValueError("it has leading or trailing whitespace")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        raise ValueError("it contains a control character")
    if len(value) > MAX_ATTRIBUTE_LENGTH:
        raise ValueError(f"it is longer than {MAX_ATTRIBUTE_LENGTH} characters")
    return value


def check_common_name(value: str) -> str:
    """A common name as written, or ValueError when a TLS client might read it differently from a policy.

    An IP address must be in its canonical text. A CN written only with
    host-name characters (letters, digits, ".", "-", "*") is read as a host
    name by TLS clients and must be a canonical DNS name (any case); other
    text ("Platform Team", "system:node:a") is free text without control
    characters or surrounding spaces.

    The error's text completes a sentence that starts with the quoted value.
    """
    try:
        check_text_attribute(value)
    except ValueError as exc:
        raise ValueError(f"is not accepted: {exc}") from None
    if len(value) > 64:
        raise ValueError("is longer than 64 characters (the X.509 limit); use a DNS SAN")
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        if str(address) != value:
            raise ValueError(f"is an IP address not in canonical form: write {quote(str(address))}")
        return value
    if _HOST_CHARACTERS.fullmatch(value):
        try:
            canonical_dns_name(value)
        except ValueError as exc:
            raise ValueError(f"is not a valid host name: {exc}") from None
    return value


def check_uri(uri: str) -> str:
    """The URI as written, or ValueError: it must be an absolute ASCII URI, and a valid SPIFFE ID if it is one.

    The error's text completes a sentence that starts with the quoted URI.
    """
    if not uri.isascii() or any(c.isspace() or unicodedata.category(c) == "Cc" for c in uri):
        raise ValueError('is not an absolute URI like "spiffe://domain/path" (ASCII, no spaces)')
    try:
        scheme = urlsplit(uri).scheme
    except ValueError as exc:
        raise ValueError(f"is not an absolute URI: {exc}") from None
    if not scheme:
        raise ValueError('is not an absolute URI like "spiffe://domain/path" (it has no scheme)')
    if scheme.lower() == SPIFFE_SCHEME:
        problem = spiffe_id_problem(uri)
        if problem is not None:
            raise ValueError(f"is not a valid SPIFFE ID: {problem}")
    return uri


def spiffe_id_problem(uri: str) -> str | None:
    """Why ``uri`` is not a SPIFFE ID of a workload (spiffe://trust-domain/path), or None when it is one.

    The SPIFFE ID spec: scheme "spiffe"; a non-empty trust domain of lower-case
    letters, digits, ".", "-", "_" with no port or user info; a non-empty path
    of segments of letters, digits, ".", "-", "_", none empty, none "." or
    "..", no trailing "/"; no query, fragment or percent-encoding.
    """
    scheme, colon, rest = uri.partition(":")
    if scheme != SPIFFE_SCHEME:
        return f'the scheme must be "{SPIFFE_SCHEME}" in lower case'
    if not colon or not rest.startswith("//"):
        return 'it must start with "spiffe://"'
    rest = rest[2:]
    if "%" in rest:
        return "it contains percent-encoded characters"
    if "#" in rest:
        return "it has a fragment (#...)"
    if "?" in rest:
        return "it has a query (?...)"
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        return "the trust domain has user info (...@)"
    if ":" in authority:
        return "the trust domain has a port"
    if not authority:
        return "the trust domain is empty"
    if not SPIFFE_TRUST_DOMAIN.fullmatch(authority):
        return f"the trust domain {quote(authority)} may only hold lower-case letters, digits, '.', '-' and '_'"
    if not slash or not path:
        return 'the path is empty (a workload\'s SPIFFE ID is like "spiffe://cluster.local/ns/default/sa/web")'
    if path.endswith("/"):
        return 'it has a trailing "/"'
    for segment in path.split("/"):
        if not segment:
            return 'it has an empty path segment ("//")'
        if segment in (".", ".."):
            return 'it has a "." or ".." path segment'
        if not SPIFFE_PATH_SEGMENT.fullmatch(segment):
            return f"path segment {quote(segment)} may only hold letters, digits, '.', '-' and '_'"
    return None


def check_email_address(email: str) -> str:
    """The address as written, or ValueError (completing a sentence about it) unless it is ASCII local@domain."""
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain or not email.isascii() or any(c.isspace() for c in email):
        raise ValueError('is not an email address like "user@example.com"')
    if any(unicodedata.category(c) == "Cc" for c in email):
        raise ValueError("is not an email address: it contains a control character")
    return email


def normalize_dns_name(name: str) -> str:
    """DNS names are case-insensitive (RFC 4343); lower-case them so comparisons are exact."""
    return name.strip().lower()


def normalize_ip_address(text: str) -> str:
    """Canonical text of an IP address, so equal addresses compare equal as strings.

    Raises ValueError for text that is not an IPv4/IPv6 address.
    """
    return str(ipaddress.ip_address(text.strip()))


def dedupe(values: Iterable[str]) -> tuple[str, ...]:
    """Drop repeated values but keep the first-seen order the user wrote."""
    return tuple(dict.fromkeys(values))


def quote(value: object) -> str:
    """Quote a value for a message the way YAML/JSON shows it ("10x", not Python's '10x')."""
    return json.dumps(value, ensure_ascii=False, default=str)
