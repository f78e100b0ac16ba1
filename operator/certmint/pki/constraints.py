"""X.509 name constraints (RFC 5280 4.2.1.10): writing them into a CA certificate, and keeping to them when signing.

A CA certificate may carry a NameConstraints extension: the names (DNS domains, IP ranges, email addresses, URI
hosts) that certificates below it may hold (``permitted``) and may not hold (``excluded``). Verifiers reject a leaf
outside them, so certmint does not sign one: :func:`violations` names every SAN of a request that a CA of the
chain it would be signed under does not allow, and the signer refuses with that reason.

Matching, as RFC 5280 reads and verifiers apply it:

- a DNS name matches a DNS constraint ``example.com`` when it is ``example.com`` or ends in ``.example.com``; a
  constraint with a leading dot (``.example.com``) matches subdomains only;
- an IP address matches a range (CIDR) that contains it;
- an email address matches ``user@host`` exactly, ``host`` for any mailbox at that host, ``.host`` for any mailbox
  at a subdomain of it;
- a URI matches by its host, as a DNS name does (``spiffe://cluster.local/...``: the trust domain).

Where ``permitted`` lists names of a type, every name of that type must match one of them; a name of a type it does
not list is not restricted. No name may match an ``excluded`` entry. The common name is not judged (certmint's
leaves repeat a SAN there; name constraints bind SANs).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class NameSet:
    """One side of a name constraint: DNS domains, IP ranges (CIDR), email addresses or hosts, URI hosts."""

    dns_domains: tuple[str, ...] = ()
    ip_ranges: tuple[str, ...] = ()
    email_addresses: tuple[str, ...] = ()
    uri_domains: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.dns_domains or self.ip_ranges or self.email_addresses or self.uri_domains)

    def general_names(self) -> list[x509.GeneralName]:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns_domains]
        names += [x509.IPAddress(ipaddress.ip_network(r, strict=False)) for r in self.ip_ranges]
        names += [x509.RFC822Name(e) for e in self.email_addresses]
        names += [x509.UniformResourceIdentifier(u) for u in self.uri_domains]
        return names

    @classmethod
    def of(cls, names: Iterable[x509.GeneralName] | None) -> NameSet:
        dns, ips, emails, uris = [], [], [], []
        for name in names or ():
            if isinstance(name, x509.DNSName):
                dns.append(name.value)
            elif isinstance(name, x509.IPAddress) and not isinstance(
                name.value, ipaddress.IPv4Address | ipaddress.IPv6Address
            ):
                ips.append(str(name.value))
            elif isinstance(name, x509.RFC822Name):
                emails.append(name.value)
            elif isinstance(name, x509.UniformResourceIdentifier):
                uris.append(name.value)
        return cls(tuple(dns), tuple(ips), tuple(emails), tuple(uris))


@dataclass(frozen=True)
class NameConstraints:
    """What a CA certificate's NameConstraints extension says (or is to say)."""

    permitted: NameSet = NameSet()
    excluded: NameSet = NameSet()
    critical: bool = False

    def extension(self) -> x509.NameConstraints:
        return x509.NameConstraints(
            permitted_subtrees=self.permitted.general_names() or None,
            excluded_subtrees=self.excluded.general_names() or None,
        )

    @classmethod
    def of(cls, cert: x509.Certificate) -> NameConstraints | None:
        """The certificate's name constraints, None when it has none."""
        try:
            ext = cert.extensions.get_extension_for_class(x509.NameConstraints)
        except x509.ExtensionNotFound:
            return None
        return cls(
            permitted=NameSet.of(ext.value.permitted_subtrees),
            excluded=NameSet.of(ext.value.excluded_subtrees),
            critical=ext.critical,
        )

    def describe(self) -> str:
        def side(names: NameSet) -> str:
            parts = [*names.dns_domains, *names.ip_ranges, *names.email_addresses, *names.uri_domains]
            return ", ".join(parts) or "-"

        return f"permitted [{side(self.permitted)}], excluded [{side(self.excluded)}]"


def _host_matches(host: str, constraint: str) -> bool:
    host, constraint = host.lower().rstrip("."), constraint.lower().rstrip(".")
    if constraint.startswith("."):
        return host.endswith(constraint)
    return host == constraint or host.endswith("." + constraint)


def _email_matches(address: str, constraint: str) -> bool:
    if "@" in constraint:
        local, _, domain = constraint.rpartition("@")
        a_local, _, a_domain = address.rpartition("@")
        return a_local == local and a_domain.lower() == domain.lower()
    domain = address.rpartition("@")[2].lower()
    constraint = constraint.lower()
    return domain.endswith(constraint) if constraint.startswith(".") else domain == constraint


def _ip_matches(address: str, constraint: str) -> bool:
    ip = ipaddress.ip_address(address)
    network: IPNetwork = ipaddress.ip_network(constraint, strict=False)
    return ip.version == network.version and ip in network


def _uri_host(uri: str) -> str:
    return urlsplit(uri).hostname or ""


def violations(
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    uris: Sequence[str],
    email_addresses: Sequence[str],
    chain: Sequence[x509.Certificate],
) -> list[str]:
    """Each SAN that a CA of ``chain`` (the issuing CA first, then those above it) does not allow, with why."""
    found: list[str] = []

    def uri_matches(uri: str, constraint: str) -> bool:
        return _host_matches(_uri_host(uri), constraint)

    kinds: list[tuple[str, Sequence[str], Callable[[NameSet], tuple[str, ...]], Callable[[str, str], bool]]] = [
        ("DNS name", dns_names, lambda c: c.dns_domains, _host_matches),
        ("IP address", ip_addresses, lambda c: c.ip_ranges, _ip_matches),
        ("URI", uris, lambda c: c.uri_domains, uri_matches),
        ("email address", email_addresses, lambda c: c.email_addresses, _email_matches),
    ]
    for ca in chain:
        constraints = NameConstraints.of(ca)
        if constraints is None:
            continue
        who = f"CA {ca.subject.rfc4514_string()!r}"
        for kind, values, of, matches in kinds:
            permitted, excluded = of(constraints.permitted), of(constraints.excluded)
            for value in values:
                if any(matches(value, c) for c in excluded):
                    found.append(f"{kind} {value!r} is excluded by the name constraints of {who}")
                elif permitted and not any(matches(value, c) for c in permitted):
                    found.append(
                        f"{kind} {value!r} is outside the name constraints of {who} (permitted: {', '.join(permitted)})"
                    )
    return found
