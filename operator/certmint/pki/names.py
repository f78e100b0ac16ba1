"""Subject names and SAN normalisation shared by CSRs, signing and inspection.

The spec side (what a user asked for) and the certificate side (what a Secret
holds) must be compared as sets of equal strings. Both sides therefore pass
every SAN through the same normalisers defined here, so "Web.Example.COM" and
"web.example.com", or "::0001" and "::1", never look like a spec change.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass


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
