"""Issuer policy: what may be signed, for whom, with messages a person can act on."""

from __future__ import annotations

import ipaddress
from dataclasses import fields, replace
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certmint.core.policy import RequestedIdentity, check_policy, isolation_condition, pattern_matches
from certmint.core.spec import IssuerSpec, Policy
from certmint.pki.csr import parse_csr
from certmint.pki.keys import PKIError
from certmint.pki.names import Identity, SubjectNames

BASE = RequestedIdentity(Identity(), duration=timedelta(hours=24), key_algorithm="ECDSA", is_ca=False)
_IDENTITY_FIELDS = {f.name for f in fields(Identity)}
SPIFFE = Policy.from_dict({"allowedURIs": ["spiffe://cluster.local/ns/{namespace}/sa/*"]})


def _check(
    policy: Policy,
    namespace: str = "team-a",
    *,
    cluster: bool = False,
    self_signed: bool = False,
    **requested: Any,
) -> list[str]:
    """check_policy for BASE with ``requested`` set: identity fields (dns_names=...) and the others (is_ca=...)."""
    names = {key: value for key, value in requested.items() if key in _IDENTITY_FIELDS}
    rest = {key: value for key, value in requested.items() if key not in _IDENTITY_FIELDS}
    return check_policy(
        policy,
        replace(BASE, identity=replace(BASE.identity, **names), **rest),
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
    assert _check(policy, common_name="evil.com") == [
        'common name "evil.com" is not allowed (allowed: *.internal, or any requested SAN; '
        "set policy.allowedCommonNames to allow common names that are not DNS names)"
    ]
    assert _check(policy, common_name="web.internal") == []
    assert _check(policy, common_name="Platform Team") == [
        'common name "Platform Team" is not allowed (allowed: *.internal, or any requested SAN; '
        "set policy.allowedCommonNames to allow common names that are not DNS names)"
    ]
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


# --- the common name is always judged (issue 11, item 2) ----------------------------------------

SERVICES = Policy.from_dict({"allowedDNSNames": ["*.{namespace}.svc", "*.{namespace}.svc.cluster.local"]})


@pytest.mark.parametrize(
    "cn",
    [
        "nodots",  # a CN without a dot was skipped: OpenSSL and Python still match it as a host name
        "api.team-b.svc.",  # a trailing dot was skipped too
        "admin",
        "WEB.TEAM-B.SVC",
        "web.team-b.svc",
    ],
)
def test_every_common_name_is_judged_against_the_dns_patterns(cn: str) -> None:
    violations = _check(SERVICES, common_name=cn)
    assert violations == [
        f'common name "{cn}" is not allowed for namespace "team-a" '
        "(allowed: *.team-a.svc, *.team-a.svc.cluster.local, or any requested SAN; "
        "set policy.allowedCommonNames to allow common names that are not DNS names)"
    ]


def test_common_name_of_own_namespace_or_equal_to_a_requested_san_is_allowed() -> None:
    assert _check(SERVICES, common_name="web.team-a.svc") == []
    assert _check(SERVICES, common_name="Web.Team-A.svc", dns_names=("web.team-a.svc",)) == []
    uri = "spiffe://cluster.local/ns/team-a/sa/web"
    assert _check(SERVICES, common_name=uri, uris=(uri,)) == []  # the URI itself is judged as a URI SAN


def test_allowed_common_names_decide_when_set() -> None:
    policy = Policy.from_dict({"allowedDNSNames": ["*.{namespace}.svc"], "allowedCommonNames": ["{namespace} *"]})
    assert _check(policy, common_name="team-a web") == []
    assert _check(policy, common_name="team-b web") == [
        'common name "team-b web" is not allowed for namespace "team-a" (allowed: team-a *, or any requested SAN)'
    ]
    # allowedCommonNames replaces allowedDNSNames for the CN: a DNS name goes in dnsNames (then it may be the CN).
    assert len(_check(policy, common_name="web.team-a.svc")) == 1
    assert _check(policy, common_name="web.team-a.svc", dns_names=("web.team-a.svc",)) == []
    assert _check(Policy.from_dict({"allowedCommonNames": []}), common_name="x") == [
        'common name "x" is not allowed (policy.allowedCommonNames is empty, so only a requested SAN may be the '
        "common name)"
    ]


def test_ip_common_name_is_judged_by_the_ip_ranges() -> None:
    policy = Policy.from_dict({"allowedIPRanges": [], "allowedDNSNames": ["*"]})
    assert _check(policy, common_name="10.0.0.1") == [
        'common name "10.0.0.1" is not allowed (policy.allowedIPRanges is empty)'
    ]


# --- subject attributes (issue 11, item 3) ------------------------------------------------------


def test_absent_allowed_subject_is_unrestricted() -> None:
    assert _check(Policy(), subject=SubjectNames(organizations=("system:masters",))) == []


def test_empty_allowed_subject_allows_no_attribute() -> None:
    policy = Policy.from_dict({"allowedSubject": {}})
    assert _check(policy) == []
    assert _check(policy, subject=SubjectNames(organizations=("system:masters",), serial_number="1")) == [
        'subject organization "system:masters" is not allowed '
        "(policy.allowedSubject.organizations is empty or not set, so none are allowed)",
        'subject serialNumber "1" is not allowed '
        "(policy.allowedSubject.serialNumbers is empty or not set, so none are allowed)",
    ]


def test_allowed_subject_patterns_per_kind() -> None:
    policy = Policy.from_dict(
        {"allowedSubject": {"organizations": ["Example", "team-{namespace}"], "countries": ["DE", "FR"]}}
    )
    assert _check(policy, subject=SubjectNames(organizations=("Example", "team-team-a"), countries=("DE",))) == []
    assert _check(
        policy,
        subject=SubjectNames(organizations=("example", "team-team-b"), countries=("US",), localities=("Berlin",)),
    ) == [
        'subject country "US" is not allowed (allowed: DE, FR)',
        'subject organization "example" is not allowed for namespace "team-a" (allowed: Example, team-team-a)',
        'subject organization "team-team-b" is not allowed for namespace "team-a" (allowed: Example, team-team-a)',
        'subject locality "Berlin" is not allowed '
        "(policy.allowedSubject.localities is empty or not set, so none are allowed)",
    ]


# --- attacks from the issue, through the CSR path ------------------------------------------------

ISOLATED = Policy.from_dict(
    {
        "allowedDNSNames": ["*.{namespace}.svc", "*.{namespace}.svc.cluster.local"],
        "allowedIPRanges": [],
        "allowedURIs": ["spiffe://cluster.local/ns/{namespace}/sa/*"],
        "allowedEmailAddresses": [],
        "allowedSubject": {},
    }
)


def _csr(subject: list[x509.NameAttribute], sans: list[x509.GeneralName] | None = None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _judge_csr(pem: bytes, policy: Policy = ISOLATED) -> list[str]:
    """What the CertificateRequest path does: parse (refusing what cannot be judged), then judge."""
    try:
        csr = parse_csr(pem)
    except PKIError as e:
        return [f"invalid CSR: {e}"]
    identity = RequestedIdentity.of_csr(csr, duration=timedelta(hours=1), is_ca=False)
    return check_policy(policy, identity, namespace="team-a", cluster_scoped_issuer=True, self_signed=False)


_CN, _O = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME


@pytest.mark.parametrize(
    ("subject", "sans", "why"),
    [
        ([(_CN, "web.team-b.svc"), (_CN, "nodots")], [], "more than one common name"),
        ([(_CN, "api.team-b.svc.")], [], "trailing dot"),
        ([(_CN, "nodots")], [], 'common name "nodots" is not allowed'),
        ([(_CN, "admin"), (_O, "system:masters")], [], 'common name "admin" is not allowed'),
        ([(_CN, "admin"), (_O, "system:masters")], [], 'subject organization "system:masters" is not allowed'),
        ([(_CN, "web.team-a.svc")], [x509.DNSName("web.team-b.svc.cluster.local")], "web.team-b.svc.cluster.local"),
        ([], [x509.IPAddress(ipaddress.ip_address("10.0.0.1"))], 'IP address "10.0.0.1" is not allowed'),
        ([], [x509.UniformResourceIdentifier("spiffe://")], "SPIFFE ID"),
        ([], [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/team-b/sa/x")], "team-b"),
        ([], [x509.RFC822Name("root@team-b.svc")], "email address"),
    ],
)
def test_tenant_attacks_on_the_isolated_policy_are_denied(
    subject: list[tuple[x509.ObjectIdentifier, str]], sans: list[x509.GeneralName], why: str
) -> None:
    violations = _judge_csr(_csr([x509.NameAttribute(oid, value) for oid, value in subject], sans))
    assert any(why in v for v in violations), violations


def test_isolated_policy_allows_the_namespace_its_own_services() -> None:
    pem = _csr(
        [x509.NameAttribute(_CN, "web.team-a.svc")],
        [
            x509.DNSName("web.team-a.svc"),
            x509.DNSName("web.team-a.svc.cluster.local"),
            x509.UniformResourceIdentifier("spiffe://cluster.local/ns/team-a/sa/web"),
        ],
    )
    assert _judge_csr(pem) == []


# --- the Unrestricted warning of a shared CA (issue 11, item 3) -----------------------------------


def _issuer(**policy: Any) -> IssuerSpec:
    return IssuerSpec.from_dict({"ca": {"secretName": "root"}, "policy": policy})


def test_a_shared_ca_without_name_restrictions_says_so() -> None:
    condition = isolation_condition(_issuer(allowedURIs=["spiffe://cluster.local/ns/{namespace}/sa/*"]))
    assert (condition.type, condition.status, condition.reason) == ("Unrestricted", "True", "NoNamespaceIsolation")
    assert condition.message.startswith(
        "every namespace that may use this ClusterIssuer (policy.allowedNamespaces is absent) can obtain any "
        "DNS name, IP address, email address and subject attribute from its CA"
    )
    for field in ("allowedDNSNames", "allowedIPRanges", "allowedEmailAddresses", "allowedSubject"):
        assert f"policy.{field}" in condition.message
    assert "policy.allowedURIs" not in condition.message


@pytest.mark.parametrize("namespaces", [None, ["team-*"], ["team-a", "team-b"]])
def test_shared_means_more_than_one_namespace(namespaces: list[str] | None) -> None:
    policy: dict[str, Any] = {"allowedDNSNames": ["*.{namespace}.svc"]}
    if namespaces is not None:
        policy["allowedNamespaces"] = namespaces
    condition = isolation_condition(_issuer(**policy))
    assert condition.status == "True"
    assert "IP address, URI, email address and subject attribute" in condition.message


def test_isolated_one_namespace_or_self_signed_issuers_are_not_flagged() -> None:
    isolated = isolation_condition(
        _issuer(
            allowedDNSNames=["*.{namespace}.svc"],
            allowedIPRanges=[],
            allowedURIs=["spiffe://cluster.local/ns/{namespace}/sa/*"],
            allowedEmailAddresses=[],
            allowedSubject={},
        )
    )
    assert (isolated.status, isolated.reason) == ("False", "NamesRestricted")
    one = isolation_condition(_issuer(allowedNamespaces=["payments"]))
    assert (one.status, one.reason) == ("False", "SingleNamespace")
    self_signed = isolation_condition(IssuerSpec.from_dict({"selfSigned": {}}))
    assert (self_signed.status, self_signed.reason) == ("False", "SelfSigned")
