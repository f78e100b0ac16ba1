"""Issuer policy: may this issuer sign this identity for this namespace?

One function, used for both paths into signing (a Certificate's own request
and a workload's CertificateRequest). It returns every violation, not just
the first, each a sentence that names the offending value and what would
have been allowed, because the person reading the status condition has to
fix the request (or the policy) in one go.

Pattern semantics are documented on certmint.core.spec.Policy.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from certmint.core.spec import Policy, format_duration
from certmint.pki.names import quote

_ANY_CHARS: Final = ".+"
_ONE_PATH_SEGMENT: Final = "[^/]+"
_NAMESPACE: Final = "{namespace}"
_LABEL: Final = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
_DNS_LIKE: Final = re.compile(rf"(\*\.)?({_LABEL}\.)+{_LABEL}", re.IGNORECASE)


@dataclass(frozen=True)
class _NameRule:
    """How one kind of name is matched against its policy list."""

    what: str
    field: str
    star: str
    ignore_case: bool
    binds_namespace: bool


_DNS_RULE: Final = _NameRule("DNS name", "allowedDNSNames", _ANY_CHARS, True, True)
_CN_RULE: Final = _NameRule("common name", "allowedDNSNames", _ANY_CHARS, True, True)
_URI_RULE: Final = _NameRule("URI SAN", "allowedURIs", _ONE_PATH_SEGMENT, False, True)
_EMAIL_RULE: Final = _NameRule("email address", "allowedEmailAddresses", _ANY_CHARS, True, False)


@dataclass(frozen=True)
class RequestedIdentity:
    """What a request asks the issuer to certify, whatever path it came by (Certificate or CSR)."""

    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    uris: tuple[str, ...]
    email_addresses: tuple[str, ...]
    duration: timedelta
    key_algorithm: str
    is_ca: bool


def check_policy(
    policy: Policy,
    requested: RequestedIdentity,
    *,
    namespace: str,
    cluster_scoped_issuer: bool,
    self_signed: bool,
) -> list[str]:
    """Every way ``requested`` breaks ``policy``; an empty list means the issuer may sign it.

    ``allowed_namespaces`` only applies to a ClusterIssuer (a namespaced
    Issuer serves its own namespace by construction). A selfSigned issuer
    always allows isCA: bootstrapping a root CA is its purpose.
    """
    violations: list[str] = []
    if cluster_scoped_issuer:
        violations += _check_namespace(policy.allowed_namespaces, namespace)
    violations += _check_names(_DNS_RULE, requested.dns_names, policy.allowed_dns_names, namespace)
    violations += _check_common_name(policy, requested, namespace)
    violations += _check_ips(requested.ip_addresses, policy.allowed_ip_ranges)
    violations += _check_names(_URI_RULE, requested.uris, policy.allowed_uris, namespace)
    emails = requested.email_addresses
    violations += _check_names(_EMAIL_RULE, emails, policy.allowed_email_addresses, namespace)
    violations += _check_duration(policy, requested.duration)
    allowed_keys = policy.allowed_key_algorithms
    if allowed_keys is not None and requested.key_algorithm not in allowed_keys:
        violations.append(f"key algorithm {requested.key_algorithm} is not allowed (allowed: {_listing(allowed_keys)})")
    if requested.is_ca and not (policy.allow_ca or self_signed):
        violations.append("CA certificates (isCA: true) are not allowed by this issuer (its policy.allowCA is false)")
    return violations


def pattern_matches(
    pattern: str, value: str, *, namespace: str | None, star: str = _ANY_CHARS, ignore_case: bool = False
) -> bool:
    """Does ``value`` match the glob ``pattern``? (``*`` becomes ``star``, ``{namespace}`` the namespace)."""
    return _compiled(pattern, namespace, star, ignore_case).fullmatch(value) is not None


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str, namespace: str | None, star: str, ignore_case: bool) -> re.Pattern[str]:
    """Translate a glob to a regex once; policies are evaluated for every request."""
    parts: list[str] = []
    for token in re.split(r"(\*+|\{namespace\})", pattern):
        if token.startswith("*"):
            parts.append(star)  # "**" is the same as "*": any run of characters
        elif token == _NAMESPACE and namespace is not None:
            parts.append(re.escape(namespace))
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts), re.IGNORECASE if ignore_case else 0)


def _shown(patterns: Sequence[str], namespace: str | None) -> str:
    if namespace is not None:
        patterns = [p.replace(_NAMESPACE, namespace) for p in patterns]
    return _listing(patterns)


def _listing(values: Sequence[str]) -> str:
    return ", ".join(values)


def _check_names(rule: _NameRule, values: Sequence[str], patterns: Sequence[str] | None, namespace: str) -> list[str]:
    if patterns is None:
        return []
    bound_to = namespace if rule.binds_namespace else None
    scope = ""
    if bound_to is not None and any(_NAMESPACE in p for p in patterns):
        scope = f" for namespace {quote(namespace)}"
    violations = []
    for value in values:
        if any(_rule_matches(rule, p, value, bound_to) for p in patterns):
            continue
        if patterns:
            allowed = f"(allowed: {_shown(patterns, bound_to)})"
        else:
            allowed = f"(policy.{rule.field} is empty, so none are allowed)"
        violations.append(f"{rule.what} {quote(value)} is not allowed{scope} {allowed}")
    return violations


def _rule_matches(rule: _NameRule, pattern: str, value: str, namespace: str | None) -> bool:
    return pattern_matches(pattern, value, namespace=namespace, star=rule.star, ignore_case=rule.ignore_case)


def _check_common_name(policy: Policy, requested: RequestedIdentity, namespace: str) -> list[str]:
    """A common name that looks like a DNS name (or IP) is held to the same rules as the SANs.

    Legacy clients still match host names against the CN, so an unchecked CN
    would let a request certify a name the policy forbids. A CN without a dot
    (e.g. a user name) is not treated as a host name. A CN equal to a
    requested SAN is already checked with the SANs.
    """
    cn = requested.common_name
    if not cn or cn.lower() in requested.dns_names or cn in requested.ip_addresses:
        return []
    try:
        ipaddress.ip_address(cn)
    except ValueError:
        pass
    else:
        return [v.replace("IP address", "common name", 1) for v in _check_ips([cn], policy.allowed_ip_ranges)]
    if not _DNS_LIKE.fullmatch(cn):
        return []
    return _check_names(_CN_RULE, [cn], policy.allowed_dns_names, namespace)


def _check_ips(addresses: Sequence[str], ranges: Sequence[str] | None) -> list[str]:
    if ranges is None:
        return []
    networks = [ipaddress.ip_network(r, strict=False) for r in ranges]
    violations = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            violations.append(f"IP address {quote(text)} is not a valid IP address")
            continue
        if any(address.version == net.version and address in net for net in networks):
            continue
        allowed = f"(allowed ranges: {_listing(ranges)})" if ranges else "(policy.allowedIPRanges is empty)"
        violations.append(f"IP address {quote(text)} is not allowed {allowed}")
    return violations


def _check_namespace(patterns: Sequence[str] | None, namespace: str) -> list[str]:
    if patterns is None or any(pattern_matches(p, namespace, namespace=None) for p in patterns):
        return []
    empty = "(policy.allowedNamespaces is empty)"
    allowed = f"(allowed namespaces: {_listing(patterns)})" if patterns else empty
    return [f"namespace {quote(namespace)} may not use this ClusterIssuer {allowed}"]


def _check_duration(policy: Policy, duration: timedelta) -> list[str]:
    asked = format_duration(duration)
    low, high = policy.min_duration, policy.max_duration
    if low is not None and duration < low:
        return [f"duration {asked} is shorter than the issuer's policy.minDuration {format_duration(low)}"]
    if high is not None and duration > high:
        return [f"duration {asked} is longer than the issuer's policy.maxDuration {format_duration(high)}"]
    return []
