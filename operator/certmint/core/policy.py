"""Issuer policy: may this issuer sign this identity for this namespace?

One function, used for both paths into signing (a Certificate's own request
and a workload's CertificateRequest). It returns every violation, not just
the first, each a sentence that names the offending value and what would
have been allowed, because the person reading the status condition has to
fix the request (or the policy) in one go.

Pattern semantics are documented on certmint.core.spec.Policy.

isolation_condition says, for a ClusterIssuer's status, whether the policy
lets every namespace that may use a shared CA obtain names of any kind (the
"Unrestricted" warning), so that a policy which isolates only SPIFFE IDs is
visible as such.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from certmint.core.conditions import Condition
from certmint.core.spec import IssuerSpec, Policy, SubjectPolicy, format_duration
from certmint.pki.csr import CSRInfo
from certmint.pki.names import SUBJECT_ATTRIBUTES, Identity, SubjectNames, quote

_ANY_CHARS: Final = ".+"
_ONE_PATH_SEGMENT: Final = "[^/]+"
_NAMESPACE: Final = "{namespace}"


@dataclass(frozen=True)
class _NameRule:
    """How one kind of name is matched against its policy list."""

    what: str
    field: str
    star: str
    ignore_case: bool
    binds_namespace: bool


_DNS_RULE: Final = _NameRule("DNS name", "allowedDNSNames", _ANY_CHARS, True, True)
_CN_RULE: Final = _NameRule("common name", "allowedCommonNames", _ANY_CHARS, True, True)
_URI_RULE: Final = _NameRule("URI SAN", "allowedURIs", _ONE_PATH_SEGMENT, False, True)
_EMAIL_RULE: Final = _NameRule("email address", "allowedEmailAddresses", _ANY_CHARS, True, False)


@dataclass(frozen=True)
class RequestedIdentity:
    """What a request asks the issuer to certify, whatever path it came by (Certificate or CSR).

    ``identity`` is everything the signed certificate will carry as an
    identity (the subject included), because the signer builds the
    certificate from exactly these values: what is not judged is not signed.
    It is the Certificate's spec or the verified CSR itself, not a copy.
    """

    identity: Identity
    duration: timedelta
    key_algorithm: str
    is_ca: bool

    @classmethod
    def of_csr(cls, csr: CSRInfo, *, duration: timedelta, is_ca: bool) -> RequestedIdentity:
        """What a CertificateRequest asks for: the signer builds the certificate from these same CSR values."""
        return cls(csr, duration=duration, key_algorithm=csr.key_algorithm, is_ca=is_ca)


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
    names = requested.identity
    violations += _check_names(_DNS_RULE, names.dns_names, policy.allowed_dns_names, namespace)
    violations += _check_common_name(policy, names, namespace)
    violations += _check_ips(names.ip_addresses, policy.allowed_ip_ranges)
    violations += _check_names(_URI_RULE, names.uris, policy.allowed_uris, namespace)
    violations += _check_names(_EMAIL_RULE, names.email_addresses, policy.allowed_email_addresses, namespace)
    violations += _check_subject(policy.allowed_subject, names.subject, namespace)
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


def _check_common_name(policy: Policy, requested: Identity, namespace: str) -> list[str]:
    """The common name is always judged; TLS clients still match host names against it.

    A CN equal to a requested SAN is judged with the SANs. An IP address is
    held to allowedIPRanges. Any other CN must match allowedCommonNames when
    that is set, else allowedDNSNames: whether a CN "looks like" a host name
    is not a safe test (OpenSSL and Python match "nodots" or
    "api.example.com." as host names), so there is no exemption.
    """
    cn = requested.common_name
    if not cn or cn in requested.ip_addresses or cn.lower() in requested.dns_names:
        return []
    if cn in requested.uris or cn.lower() in (e.lower() for e in requested.email_addresses):
        return []
    try:
        ipaddress.ip_address(cn)
    except ValueError:
        pass
    else:
        return [v.replace("IP address", "common name", 1) for v in _check_ips([cn], policy.allowed_ip_ranges)]
    if policy.allowed_common_names is not None:
        patterns, field, hint = policy.allowed_common_names, "allowedCommonNames", ""
        empty = "so only a requested SAN may be the common name"
    elif policy.allowed_dns_names is not None:
        patterns, field = policy.allowed_dns_names, "allowedDNSNames"
        hint = "; set policy.allowedCommonNames to allow common names that are not DNS names"
        empty = "so only a requested SAN may be the common name, unless policy.allowedCommonNames allows it"
    else:
        return []
    if any(_rule_matches(_CN_RULE, p, cn, namespace) for p in patterns):
        return []
    scope = f" for namespace {quote(namespace)}" if any(_NAMESPACE in p for p in patterns) else ""
    if patterns:
        return [
            f"common name {quote(cn)} is not allowed{scope} (allowed: {_shown(patterns, namespace)}, "
            f"or any requested SAN{hint})"
        ]
    return [f"common name {quote(cn)} is not allowed (policy.{field} is empty, {empty})"]


def _check_subject(allowed: SubjectPolicy | None, subject: SubjectNames, namespace: str) -> list[str]:
    """Each subject attribute value must match a pattern of its kind (case-sensitive), when allowedSubject is set."""
    if allowed is None:
        return []
    violations = []
    for attribute in SUBJECT_ATTRIBUTES:
        patterns = allowed.patterns(attribute)
        scope = f" for namespace {quote(namespace)}" if any(_NAMESPACE in p for p in patterns) else ""
        for value in subject.values(attribute):
            if any(pattern_matches(p, value, namespace=namespace) for p in patterns):
                continue
            if patterns:
                allowed_text = f"(allowed: {_shown(patterns, namespace)})"
            else:
                field = SubjectPolicy.key(attribute)
                allowed_text = f"(policy.allowedSubject.{field} is empty or not set, so none are allowed)"
            violations.append(f"subject {attribute.noun} {quote(value)} is not allowed{scope} {allowed_text}")
    return violations


#: Condition type a ClusterIssuer's status carries: is a shared CA without namespace isolation?
UNRESTRICTED: Final = "Unrestricted"


def isolation_condition(spec: IssuerSpec) -> Condition:
    """The ``Unrestricted`` condition of a ClusterIssuer: True when namespaces can obtain any name of some kind.

    A ca ClusterIssuer that several namespaces may use (allowedNamespaces
    absent, a pattern, or more than one name) and that leaves any of
    allowedDNSNames, allowedIPRanges, allowedURIs, allowedEmailAddresses or
    allowedSubject absent lets each of those namespaces obtain, from the CA
    every workload trusts, names of that kind that belong to others (another
    namespace's Service name, 10.0.0.1, O=system:masters). That is legal, and
    sometimes meant, but must be visible. False otherwise, with the reason.
    Only patterns that are absent count: whether present patterns bind names
    to {namespace} is for the reader of the policy to check.
    """
    if spec.signer == "selfSigned":
        return Condition(
            UNRESTRICTED,
            "False",
            "SelfSigned",
            "a selfSigned issuer signs each certificate with that certificate's own key, so nothing it signs is "
            "trusted by anyone but the holder",
        )
    policy = spec.policy
    namespaces = policy.allowed_namespaces
    if namespaces is not None and not namespaces:
        return Condition(
            UNRESTRICTED, "False", "NoNamespace", "no namespace may use it (policy.allowedNamespaces is empty)"
        )
    if namespaces is not None and len(namespaces) == 1 and "*" not in namespaces[0]:
        return Condition(UNRESTRICTED, "False", "SingleNamespace", f"only namespace {quote(namespaces[0])} may use it")
    gaps = [
        (what, field, example)
        for what, field, value, example in (
            ("DNS name", "allowedDNSNames", policy.allowed_dns_names, '["*.{namespace}.svc"]'),
            ("IP address", "allowedIPRanges", policy.allowed_ip_ranges, "[] for none"),
            ("URI", "allowedURIs", policy.allowed_uris, '["spiffe://cluster.local/ns/{namespace}/sa/*"]'),
            ("email address", "allowedEmailAddresses", policy.allowed_email_addresses, "[] for none"),
            ("subject attribute", "allowedSubject", policy.allowed_subject, "{} for none"),
        )
        if value is None
    ]
    if not gaps:
        return Condition(
            UNRESTRICTED,
            "False",
            "NamesRestricted",
            "the policy restricts DNS names, IP addresses, URIs, email addresses and subject attributes; check that "
            "its patterns bind names to {namespace} where namespaces must not share them",
        )
    who = (
        "policy.allowedNamespaces is absent"
        if namespaces is None
        else f"policy.allowedNamespaces: {_listing(namespaces)}"
    )
    kinds = _and([what for what, _, _ in gaps])
    fixes = ", ".join(f"policy.{field} ({example})" for _, field, example in gaps)
    return Condition(
        UNRESTRICTED,
        "True",
        "NoNamespaceIsolation",
        f"every namespace that may use this ClusterIssuer ({who}) can obtain any {kinds} from its CA, including "
        f"names that belong to other namespaces; restrict them with {fixes}, or let a single namespace use it "
        "with policy.allowedNamespaces",
    )


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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


def namespace_allowed(patterns: Sequence[str] | None, namespace: str) -> bool:
    """Whether a ClusterIssuer's policy.allowedNamespaces (None: every namespace) admits ``namespace``."""
    return patterns is None or any(pattern_matches(p, namespace, namespace=None) for p in patterns)


def _check_namespace(patterns: Sequence[str] | None, namespace: str) -> list[str]:
    if namespace_allowed(patterns, namespace):
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
