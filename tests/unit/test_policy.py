"""Issuer policy: what may be signed, for whom, with messages a person can act on."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from certmint.core.policy import RequestedIdentity, check_policy, pattern_matches
from certmint.core.spec import Policy

BASE = RequestedIdentity(
    common_name=None,
    dns_names=(),
    ip_addresses=(),
    uris=(),
    email_addresses=(),
    duration=timedelta(hours=24),
    key_algorithm="ECDSA",
    is_ca=False,
)
SPIFFE = Policy.from_dict({"allowedURIs": ["spiffe://cluster.local/ns/{namespace}/sa/*"]})


def _check(
    policy: Policy,
    namespace: str = "team-a",
    *,
    cluster: bool = False,
    self_signed: bool = False,
    **requested: Any,
) -> list[str]:
    return check_policy(
        policy,
        replace(BASE, **requested),
        namespace=namespace,
        cluster_scoped_issuer=cluster,
        self_signed=self_signed,
    )


def test_spiffe_id_of_own_namespace_is_allowed() -> None:
    assert _check(SPIFFE, uris=("spiffe://cluster.local/ns/team-a/sa/web",)) == []


def test_spiffe_id_of_another_namespace_is_denied_with_the_bound_pattern() -> None:
    violations = _check(SPIFFE, uris=("spiffe://cluster.local/ns/other/sa/x",))
    assert violations == [
        'URI SAN "spiffe://cluster.local/ns/other/sa/x" is not allowed for namespace "team-a" '
        "(allowed: spiffe://cluster.local/ns/team-a/sa/*)"
    ]


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://cluster.local/ns/team-a/sa/",  # `*` needs at least one character
        "spiffe://cluster.local/ns/team-a/sa/web/extra",  # `*` is one path segment
        "spiffe://cluster.local/ns/team-ab/sa/web",  # the namespace is matched literally
        "SPIFFE://cluster.local/ns/team-a/sa/web",  # URIs are case-sensitive
    ],
)
def test_uri_pattern_edges(uri: str) -> None:
    assert len(_check(SPIFFE, uris=(uri,))) == 1


def test_namespace_with_regex_characters_is_literal() -> None:
    policy = Policy.from_dict({"allowedURIs": ["spiffe://td/ns/{namespace}"]})
    assert _check(policy, "a.b", uris=("spiffe://td/ns/a.b",)) == []
    assert len(_check(policy, "a.b", uris=("spiffe://td/ns/axb",))) == 1


@pytest.mark.parametrize(
    ("pattern", "name", "allowed"),
    [
        ("*.svc.cluster.local", "web.team-a.svc.cluster.local", True),  # `*` spans dots (CRD semantics)
        ("*.svc.cluster.local", "svc.cluster.local", False),
        ("*.{namespace}.svc.cluster.local", "web.team-a.svc.cluster.local", True),
        ("*.{namespace}.svc.cluster.local", "web.team-b.svc.cluster.local", False),
        ("api.example.com", "API.Example.COM", True),  # case-insensitive
        ("api.example.com", "api.example.co", False),
        ("web-*.example.com", "web-1.example.com", True),
        ("web-*.example.com", "db-1.example.com", False),
        ("*.example.com", "*.example.com", True),  # a wildcard name under an allowed wildcard
    ],
)
def test_dns_patterns(pattern: str, name: str, allowed: bool) -> None:
    policy = Policy.from_dict({"allowedDNSNames": [pattern]})
    violations = _check(policy, dns_names=(name,))
    assert (violations == []) is allowed
    if not allowed:
        assert violations[0].startswith(f'DNS name "{name}" is not allowed')


def test_every_offending_name_is_reported() -> None:
    policy = Policy.from_dict({"allowedDNSNames": ["*.internal"]})
    violations = _check(policy, dns_names=("a.internal", "evil.com", "also.evil.com"))
    assert violations == [
        'DNS name "evil.com" is not allowed (allowed: *.internal)',
        'DNS name "also.evil.com" is not allowed (allowed: *.internal)',
    ]


def test_absent_list_is_unrestricted_but_empty_list_allows_nothing() -> None:
    assert _check(Policy(), dns_names=("anything.example",)) == []
    none_allowed = Policy.from_dict({"allowedDNSNames": []})
    assert _check(none_allowed, dns_names=("anything.example",)) == [
        'DNS name "anything.example" is not allowed (policy.allowedDNSNames is empty, so none are allowed)'
    ]
    # Other SAN types stay open when only one list is set.
    assert _check(SPIFFE, dns_names=("anything.example",)) == []


def test_dns_like_common_name_is_held_to_the_dns_patterns() -> None:
    policy = Policy.from_dict({"allowedDNSNames": ["*.internal"]})
    assert _check(policy, common_name="evil.com") == ['common name "evil.com" is not allowed (allowed: *.internal)']
    assert _check(policy, common_name="web.internal") == []
    assert _check(policy, common_name="Platform Team") == []  # not a host name
    # A CN that repeats a requested SAN is reported once, as the SAN.
    assert len(_check(policy, common_name="evil.com", dns_names=("evil.com",))) == 1


def test_ip_ranges() -> None:
    policy = Policy.from_dict({"allowedIPRanges": ["10.0.0.0/8", "fd00::/8"]})
    assert _check(policy, ip_addresses=("10.1.2.3", "fd00::7")) == []
    assert _check(policy, ip_addresses=("192.168.0.1", "::1")) == [
        'IP address "192.168.0.1" is not allowed (allowed ranges: 10.0.0.0/8, fd00::/8)',
        'IP address "::1" is not allowed (allowed ranges: 10.0.0.0/8, fd00::/8)',
    ]
    assert _check(policy, common_name="192.168.0.1") == [
        'common name "192.168.0.1" is not allowed (allowed ranges: 10.0.0.0/8, fd00::/8)'
    ]


def test_email_patterns() -> None:
    policy = Policy.from_dict({"allowedEmailAddresses": ["*@example.com"]})
    assert _check(policy, email_addresses=("Ops@Example.com",)) == []
    assert _check(policy, email_addresses=("ops@example.org",)) == [
        'email address "ops@example.org" is not allowed (allowed: *@example.com)'
    ]


def test_durations() -> None:
    policy = Policy.from_dict({"minDuration": "1h", "maxDuration": "720h"})
    assert _check(policy, duration=timedelta(hours=1)) == []
    assert _check(policy, duration=timedelta(hours=720)) == []
    assert _check(policy, duration=timedelta(minutes=10)) == [
        "duration 10m is shorter than the issuer's policy.minDuration 1h"
    ]
    assert _check(policy, duration=timedelta(hours=2160)) == [
        "duration 2160h is longer than the issuer's policy.maxDuration 720h"
    ]


def test_key_algorithms() -> None:
    policy = Policy.from_dict({"allowedKeyAlgorithms": ["ECDSA", "Ed25519"]})
    assert _check(policy, key_algorithm="Ed25519") == []
    assert _check(policy, key_algorithm="RSA") == ["key algorithm RSA is not allowed (allowed: ECDSA, Ed25519)"]


def test_namespaces_only_for_cluster_issuers() -> None:
    policy = Policy.from_dict({"allowedNamespaces": ["payments", "team-*"]})
    assert _check(policy, "team-a", cluster=True) == []
    assert _check(policy, "payments", cluster=True) == []
    assert _check(policy, "default", cluster=True) == [
        'namespace "default" may not use this ClusterIssuer (allowed namespaces: payments, team-*)'
    ]
    assert _check(policy, "team-", cluster=True) != []  # `*` needs at least one character
    assert _check(policy, "default", cluster=False) == []  # a namespaced Issuer serves its own namespace
    assert _check(Policy.from_dict({"allowedNamespaces": []}), "default", cluster=True) == [
        'namespace "default" may not use this ClusterIssuer (policy.allowedNamespaces is empty)'
    ]


def test_is_ca() -> None:
    assert _check(Policy(), is_ca=True) == [
        "CA certificates (isCA: true) are not allowed by this issuer (its policy.allowCA is false)"
    ]
    assert _check(Policy(allow_ca=True), is_ca=True) == []
    assert _check(Policy(), is_ca=True, self_signed=True) == []  # bootstrapping a root is its purpose


def test_all_violations_together() -> None:
    policy = Policy.from_dict(
        {
            "allowedDNSNames": ["*.internal"],
            "allowedURIs": ["spiffe://td/ns/{namespace}/*"],
            "maxDuration": "1h",
            "allowedKeyAlgorithms": ["ECDSA"],
            "allowedNamespaces": ["prod"],
        }
    )
    violations = _check(
        policy,
        "dev",
        cluster=True,
        dns_names=("x.com",),
        uris=("spiffe://td/ns/prod/web",),
        duration=timedelta(hours=2),
        key_algorithm="RSA",
        is_ca=True,
    )
    assert [v.split(" ")[0] for v in violations] == ["namespace", "DNS", "URI", "duration", "key", "CA"]


def test_pattern_matches_helper() -> None:
    assert pattern_matches("a*c", "abbbc", namespace=None)
    assert not pattern_matches("a*c", "ac", namespace=None)
    assert pattern_matches("a**c", "abc", namespace=None)  # runs of `*` are one `*`
    assert not pattern_matches("a.c", "abc", namespace=None)  # dots are literal
    assert pattern_matches("{namespace}", "{namespace}", namespace=None)
