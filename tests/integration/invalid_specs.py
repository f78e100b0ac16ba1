"""Objects the API server must refuse at admission, with the reason it gives.

Each entry of ``INVALID_OBJECTS`` is ``(test id, manifest, expected substring)``:
creating ``manifest`` must fail with an error (422 Invalid) whose message
contains the substring. Every manifest is one of ``VALID_OBJECTS`` with a
single defect, so a refusal can only come from that defect; the integration
test should also create every ``VALID_OBJECTS`` entry and expect success,
which proves the baselines themselves are accepted.

The substrings are either the ``message`` of a CEL rule in crds/ (kept
verbatim, so changing a message means changing it here too) or the field
path plus the stable part of the API server's schema-validation wording
("Required value", "Unsupported value", "in body should match", ...). They
contain no quotes or backslashes, so they match both the human-readable
message (kubectl) and the raw JSON body of the 422 response, where quotes
are escaped.

No refusal message may contain any of ``NEVER_IN_ERRORS``: those words mean
a CEL rule failed at run time instead of reporting the defect cleanly.

Rules that only apply on update (CertificateRequest spec immutability, the
Approved/Denied conditions being final) cannot be expressed as a single
create and are not listed here.
"""

from __future__ import annotations

import copy
from typing import Any

API_VERSION = "certmint.dev/v1alpha1"
NEVER_IN_ERRORS = ("evaluating rule", "no such key", "no such overload")
NAMESPACE = "default"

# A real ECDSA P-256 CSR for CN=web.default.svc (DNS SAN web.default.svc).
CSR_PEM = """-----BEGIN CERTIFICATE REQUEST-----
MIIBAzCBqQIBADAaMRgwFgYDVQQDDA93ZWIuZGVmYXVsdC5zdmMwWTATBgcqhkjO
PQIBBggqhkjOPQMBBwNCAASCczNhR0tZq9czUpCL8ZgTkaGhapvMfKy452jZZ8NG
Q0yVrYOsA8tR1UXG5Ee4e2zWc+bU4S8c9vtpnRDXsV38oC0wKwYJKoZIhvcNAQkO
MR4wHDAaBgNVHREEEzARgg93ZWIuZGVmYXVsdC5zdmMwCgYIKoZIzj0EAwIDSQAw
RgIhAOjBl459jUU9/e+wa2gACdvM9deS/f0DTGMGLZP9UgPyAiEAvkTCaAQzSpzC
ObKQwRaLUzMxXhPnepB62u5AYTZx1HI=
-----END CERTIFICATE REQUEST-----
"""


def _meta(name: str, namespaced: bool) -> dict[str, str]:
    return {"name": name, "namespace": NAMESPACE} if namespaced else {"name": name}


def issuer(name: str = "valid-issuer", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Issuer",
        "metadata": _meta(name, True),
        "spec": spec or {"ca": {"secretName": "root-ca"}},
    }


def cluster_issuer(name: str = "valid-clusterissuer", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterIssuer",
        "metadata": _meta(name, False),
        "spec": spec or {"selfSigned": {}},
    }


def certificate(name: str = "valid-certificate", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "secretName": "web-tls",
        "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"},
        "dnsNames": ["web.default.svc"],
    }
    base.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "Certificate",
        "metadata": _meta(name, True),
        "spec": base,
    }


def certificate_request(name: str = "valid-certificaterequest", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "request": CSR_PEM,
        "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"},
    }
    base.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "CertificateRequest",
        "metadata": _meta(name, True),
        "spec": base,
    }


def _without(obj: dict[str, Any], *path: str) -> dict[str, Any]:
    """Copy of obj with the field at path removed."""
    out = copy.deepcopy(obj)
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


# Accepted as written; each invalid object below differs from one of these in one place.
VALID_OBJECTS: list[tuple[str, dict[str, Any]]] = [
    ("issuer-ca", issuer()),
    (
        "issuer-selfsigned-with-policy",
        issuer(
            "valid-issuer-selfsigned",
            selfSigned={},
            policy={
                "allowedDNSNames": ["*.svc.cluster.local", "*.{namespace}.svc.cluster.local"],
                "allowedURIs": ["spiffe://cluster.local/ns/{namespace}/sa/*"],
                "allowedIPRanges": ["10.0.0.0/8", "fd00::/8"],
                "allowedEmailAddresses": ["*@example.com"],
                "minDuration": "5m",
                "maxDuration": "2160h",
                "allowedKeyAlgorithms": ["ECDSA", "Ed25519"],
                "allowCA": True,
            },
        ),
    ),
    ("clusterissuer-selfsigned", cluster_issuer()),
    (
        "clusterissuer-ca-namespaces",
        cluster_issuer(
            "valid-clusterissuer-ca",
            ca={"secretName": "root-ca"},
            policy={"allowedNamespaces": ["payments", "team-*"], "maxDuration": "24h"},
        ),
    ),
    ("certificate-minimal", certificate()),
    (
        "certificate-full",
        certificate(
            "valid-certificate-full",
            commonName="web.default.svc",
            dnsNames=["web", "web.default.svc", "*.web.default.svc.cluster.local"],
            ipAddresses=["10.0.0.7", "fd00::7"],
            uris=["spiffe://cluster.local/ns/default/sa/web"],
            emailAddresses=["ops@example.com"],
            subject={"organizations": ["Example Corp"], "countries": ["DE"], "serialNumber": "42"},
            duration="10m",
            renewBefore="2m",
            usages=["digital signature", "server auth"],
            privateKey={"algorithm": "Ed25519", "encoding": "PKCS8", "rotationPolicy": "Never"},
            secretTemplate={"labels": {"app": "web"}, "annotations": {"reloader": "true"}},
            revisionHistoryLimit=1,
            secretDeletionPolicy="Delete",
        ),
    ),
    (
        "certificate-rsa-percentage",
        certificate(
            "valid-certificate-rsa",
            commonName="legacy",
            dnsNames=[],
            renewBeforePercentage=50,
            privateKey={"algorithm": "RSA", "size": 3072},
            isCA=True,
        ),
    ),
    (
        "certificate-at-the-limits",
        certificate(
            "valid-certificate-limits",
            duration="87600h",
            renewBefore="0087599h59m",
            # Not IPv4-mapped (that is ::ffff:0:0/96): an ordinary IPv6 address.
            ipAddresses=["::ffff:0:a00:1"],
            secretTemplate={
                "labels": {"notcertmint.dev/x": "1"},
                "annotations": {"example.com/certmint.dev": "1", "certmint.example.com/x": "1"},
            },
        ),
    ),
    ("certificaterequest-minimal", certificate_request()),
    (
        "certificaterequest-full",
        certificate_request(
            "valid-certificaterequest-full",
            issuerRef={"name": "team-ca", "kind": "Issuer", "group": "certmint.dev"},
            duration="1h",
            usages=["client auth"],
            isCA=False,
        ),
    ),
]

_EXACTLY_ONE = "exactly one of spec.selfSigned or spec.ca must be set"
_IDENTITY = "at least one of spec.commonName, spec.dnsNames, spec.ipAddresses, spec.uris or spec.emailAddresses"
_BAD_CSR = "spec.request must be a PEM-encoded CSR"

INVALID_OBJECTS: list[tuple[str, dict[str, Any], str]] = [
    # ------------------------------------------------------------------ Issuer
    ("issuer-missing-spec", _without(issuer("bad-issuer-nospec"), "spec"), "spec: Required value"),
    ("issuer-neither-kind", issuer("bad-issuer-neither", policy={}), _EXACTLY_ONE),
    (
        "issuer-both-kinds",
        issuer("bad-issuer-both", selfSigned={}, ca={"secretName": "root-ca"}),
        _EXACTLY_ONE,
    ),
    (
        "issuer-ca-without-secretname",
        issuer("bad-issuer-nosecret", ca={}),
        "spec.ca.secretName: Required value",
    ),
    (
        "issuer-ca-secretname-not-dns1123",
        issuer("bad-issuer-secretname", ca={"secretName": "Root_CA"}),
        "spec.ca.secretName in body should match",
    ),
    (
        "issuer-policy-min-above-max",
        issuer("bad-issuer-minmax", selfSigned={}, policy={"minDuration": "2h", "maxDuration": "1h"}),
        "spec.policy.minDuration must not be longer than spec.policy.maxDuration",
    ),
    (
        "issuer-policy-duration-in-days",
        issuer("bad-issuer-days", selfSigned={}, policy={"maxDuration": "90d"}),
        "spec.policy.maxDuration in body should match",
    ),
    (
        "issuer-policy-bad-cidr",
        issuer("bad-issuer-cidr", selfSigned={}, policy={"allowedIPRanges": ["10.0.0.0/8", "10.0.0.0/33"]}),
        "each entry of spec.policy.allowedIPRanges must be a CIDR",
    ),
    (
        "issuer-policy-ip-instead-of-cidr",
        issuer("bad-issuer-ip", selfSigned={}, policy={"allowedIPRanges": ["10.0.0.1"]}),
        "each entry of spec.policy.allowedIPRanges must be a CIDR",
    ),
    (
        "issuer-policy-unknown-key-algorithm",
        issuer("bad-issuer-alg", selfSigned={}, policy={"allowedKeyAlgorithms": ["DSA"]}),
        "spec.policy.allowedKeyAlgorithms[0]: Unsupported value",
    ),
    (
        "issuer-policy-allowca-not-boolean",
        issuer("bad-issuer-allowca", selfSigned={}, policy={"allowCA": "yes"}),
        "spec.policy.allowCA in body must be of type boolean",
    ),
    # ----------------------------------------------------------- ClusterIssuer
    ("clusterissuer-neither-kind", cluster_issuer("bad-clusterissuer-neither", policy={}), _EXACTLY_ONE),
    (
        "clusterissuer-both-kinds",
        cluster_issuer("bad-clusterissuer-both", selfSigned={}, ca={"secretName": "root-ca"}),
        _EXACTLY_ONE,
    ),
    (
        "clusterissuer-bad-namespace-pattern",
        cluster_issuer("bad-clusterissuer-ns", selfSigned={}, policy={"allowedNamespaces": ["Team_A"]}),
        "spec.policy.allowedNamespaces[0] in body should match",
    ),
    (
        "clusterissuer-policy-min-above-max",
        cluster_issuer("bad-clusterissuer-minmax", selfSigned={}, policy={"minDuration": "48h", "maxDuration": "24h"}),
        "spec.policy.minDuration must not be longer than spec.policy.maxDuration",
    ),
    # ------------------------------------------------------------- Certificate
    (
        "certificate-missing-secretname",
        _without(certificate("bad-cert-nosecret"), "spec", "secretName"),
        "spec.secretName: Required value",
    ),
    (
        "certificate-missing-issuerref",
        _without(certificate("bad-cert-noissuer"), "spec", "issuerRef"),
        "spec.issuerRef: Required value",
    ),
    (
        "certificate-issuerref-without-name",
        certificate("bad-cert-issuername", issuerRef={"kind": "Issuer"}),
        "spec.issuerRef.name: Required value",
    ),
    (
        "certificate-issuerref-unknown-kind",
        certificate("bad-cert-issuerkind", issuerRef={"name": "x", "kind": "VaultIssuer"}),
        "spec.issuerRef.kind: Unsupported value",
    ),
    (
        "certificate-issuerref-foreign-group",
        certificate("bad-cert-issuergroup", issuerRef={"name": "x", "group": "cert-manager.io"}),
        "spec.issuerRef.group: Unsupported value",
    ),
    (
        "certificate-secretname-not-dns1123",
        certificate("bad-cert-secretname", secretName="Web_TLS"),
        "spec.secretName in body should match",
    ),
    ("certificate-no-identity", _without(certificate("bad-cert-noidentity"), "spec", "dnsNames"), _IDENTITY),
    (
        "certificate-only-empty-identity-lists",
        certificate("bad-cert-emptyidentity", dnsNames=[], ipAddresses=[], uris=[], emailAddresses=[]),
        _IDENTITY,
    ),
    (
        "certificate-commonname-too-long",
        certificate("bad-cert-cn", commonName="c" * 65),
        "spec.commonName: Too long",
    ),
    (
        "certificate-dnsname-with-underscore",
        certificate("bad-cert-dns", dnsNames=["web_1.example.com"]),
        "spec.dnsNames[0] in body should match",
    ),
    (
        "certificate-too-many-dnsnames",
        certificate("bad-cert-manydns", dnsNames=[f"web-{i}.example.com" for i in range(101)]),
        "spec.dnsNames: Too many: 101: must have at most 100 items",
    ),
    (
        "certificate-bad-ip-address",
        certificate("bad-cert-ip", ipAddresses=["10.0.0.256"]),
        "each entry of spec.ipAddresses must be an IPv4 or IPv6 address",
    ),
    (
        "certificate-uri-without-scheme",
        certificate("bad-cert-urischeme", uris=["cluster.local/ns/default/sa/web"]),
        "spec.uris[0] in body should match",
    ),
    (
        "certificate-unparseable-uri",
        certificate("bad-cert-uri", uris=["https://a:b:c/"]),
        "each entry of spec.uris must be an absolute URI",
    ),
    (
        "certificate-bad-email",
        certificate("bad-cert-email", emailAddresses=["ops.example.com"]),
        "spec.emailAddresses[0] in body should match",
    ),
    (
        "certificate-lowercase-country",
        certificate("bad-cert-country", subject={"countries": ["de"]}),
        "spec.subject.countries[0] in body should match",
    ),
    (
        "certificate-duration-in-days",
        certificate("bad-cert-days", duration="90d"),
        "spec.duration in body should match",
    ),
    (
        "certificate-duration-below-one-minute",
        certificate("bad-cert-short", duration="30s"),
        "spec.duration must be at least 1m",
    ),
    (
        "certificate-renewbefore-not-shorter-than-duration",
        certificate("bad-cert-renewbefore", duration="1h", renewBefore="1h"),
        "spec.renewBefore must be shorter than spec.duration",
    ),
    (
        "certificate-renewbefore-longer-than-default-duration",
        certificate("bad-cert-renewdefault", renewBefore="2400h"),
        "spec.renewBefore must be shorter than spec.duration",
    ),
    (
        "certificate-renewbefore-in-days",
        certificate("bad-cert-renewdays", renewBefore="7d"),
        "spec.renewBefore in body should match",
    ),
    (
        "certificate-renewbefore-below-five-seconds",
        certificate("bad-cert-renew1s", duration="10m", renewBefore="1s"),
        "spec.renewBefore must be at least 5s",
    ),
    (
        "certificate-renewbefore-and-percentage",
        certificate("bad-cert-renewboth", renewBefore="1h", renewBeforePercentage=20),
        "spec.renewBefore and spec.renewBeforePercentage are mutually exclusive",
    ),
    (
        "certificate-renewbeforepercentage-100",
        certificate("bad-cert-pct100", renewBeforePercentage=100),
        "spec.renewBeforePercentage in body should be less than or equal to 99",
    ),
    (
        "certificate-renewbeforepercentage-0",
        certificate("bad-cert-pct0", renewBeforePercentage=0),
        "spec.renewBeforePercentage in body should be greater than or equal to 1",
    ),
    (
        "certificate-empty-usages",
        certificate("bad-cert-nousage", usages=[]),
        "spec.usages in body should have at least 1 items",
    ),
    (
        "certificate-unknown-usage",
        certificate("bad-cert-usage", usages=["server-auth"]),
        "spec.usages[0]: Unsupported value",
    ),
    (
        "certificate-duplicate-usage",
        certificate("bad-cert-dupusage", usages=["server auth", "server auth"]),
        "spec.usages[1]: Duplicate value",
    ),
    (
        "certificate-unknown-key-algorithm",
        certificate("bad-cert-alg", privateKey={"algorithm": "DSA"}),
        "spec.privateKey.algorithm: Unsupported value",
    ),
    (
        "certificate-unknown-key-size",
        certificate("bad-cert-size", privateKey={"algorithm": "RSA", "size": 1024}),
        "spec.privateKey.size: Unsupported value: 1024",
    ),
    (
        "certificate-ecdsa-with-rsa-size",
        certificate("bad-cert-ecsize", privateKey={"algorithm": "ECDSA", "size": 2048}),
        "spec.privateKey.size must be 256, 384 or 521 when spec.privateKey.algorithm is ECDSA",
    ),
    (
        "certificate-default-algorithm-with-rsa-size",
        certificate("bad-cert-defsize", privateKey={"size": 4096}),
        "spec.privateKey.size must be 256, 384 or 521 when spec.privateKey.algorithm is ECDSA",
    ),
    (
        "certificate-rsa-with-ecdsa-size",
        certificate("bad-cert-rsasize", privateKey={"algorithm": "RSA", "size": 384}),
        "spec.privateKey.size must be 2048, 3072 or 4096 when spec.privateKey.algorithm is RSA",
    ),
    (
        "certificate-ed25519-with-size",
        certificate("bad-cert-edsize", privateKey={"algorithm": "Ed25519", "encoding": "PKCS8", "size": 256}),
        "spec.privateKey.size must not be set when spec.privateKey.algorithm is Ed25519",
    ),
    (
        "certificate-ed25519-default-pkcs1",
        certificate("bad-cert-edpkcs1", privateKey={"algorithm": "Ed25519"}),
        "spec.privateKey.encoding must be PKCS8 when spec.privateKey.algorithm is Ed25519",
    ),
    (
        "certificate-unknown-encoding",
        certificate("bad-cert-encoding", privateKey={"encoding": "DER"}),
        "spec.privateKey.encoding: Unsupported value",
    ),
    (
        "certificate-unknown-rotation-policy",
        certificate("bad-cert-rotation", privateKey={"rotationPolicy": "Sometimes"}),
        "spec.privateKey.rotationPolicy: Unsupported value",
    ),
    (
        "certificate-revisionhistorylimit-0",
        certificate("bad-cert-history", revisionHistoryLimit=0),
        "spec.revisionHistoryLimit in body should be greater than or equal to 1",
    ),
    (
        "certificate-unknown-secret-deletion-policy",
        certificate("bad-cert-deletion", secretDeletionPolicy="Orphan"),
        "spec.secretDeletionPolicy: Unsupported value",
    ),
    (
        "certificate-isca-not-boolean",
        certificate("bad-cert-isca", isCA="true"),
        "spec.isCA in body must be of type boolean",
    ),
    # A value too large for CEL's duration() is reported as the maximum, never as a type-conversion error.
    (
        "issuer-maxduration-too-large-for-cel",
        issuer("bad-issuer-hugemax", selfSigned={}, policy={"minDuration": "1h", "maxDuration": "3000000h"}),
        "spec.policy.maxDuration must be at most 87600h (10 years)",
    ),
    (
        "clusterissuer-minduration-too-large-for-cel",
        cluster_issuer("bad-clusterissuer-hugemin", selfSigned={}, policy={"minDuration": "99999999999999999999ns"}),
        "spec.policy.minDuration must be at most 87600h (10 years)",
    ),
    (
        "certificate-duration-too-large-for-cel",
        certificate("bad-cert-huge", duration="3000000h"),
        "spec.duration must be at most 87600h (10 years)",
    ),
    (
        "certificate-duration-above-maximum",
        certificate("bad-cert-long", duration="87601h"),
        "spec.duration must be at most 87600h (10 years)",
    ),
    (
        "certificate-renewbefore-too-large-for-cel",
        certificate("bad-cert-renewhuge", renewBefore="3000000h"),
        "spec.renewBefore must be shorter than spec.duration",
    ),
    (
        "certificate-ipv4-mapped-ip-address",
        certificate("bad-cert-mapped", ipAddresses=["10.0.0.2", "::ffff:10.0.0.1"]),
        "spec.ipAddresses must not contain IPv4-mapped IPv6 addresses: write 10.0.0.1 instead of ::ffff:10.0.0.1",
    ),
    (
        "certificate-ipv4-mapped-ip-address-hex",
        certificate("bad-cert-mappedhex", ipAddresses=["0:0:0:0:0:ffff:a00:1"]),
        "spec.ipAddresses must not contain IPv4-mapped IPv6 addresses: write the IPv4 address instead of "
        "0:0:0:0:0:ffff:a00:1",
    ),
    (
        "certificate-secrettemplate-reserved-label",
        certificate("bad-cert-label", secretTemplate={"labels": {"app": "web", "certmint.dev/certificate-name": "db"}}),
        "spec.secretTemplate.labels must not set certmint.dev/certificate-name: keys under certmint.dev/ and its "
        "subdomains are reserved for the operator",
    ),
    (
        "certificate-secrettemplate-reserved-annotation",
        certificate("bad-cert-annotation", secretTemplate={"annotations": {"certmint.dev/certificate-uid": "0"}}),
        "spec.secretTemplate.annotations must not set certmint.dev/certificate-uid: keys under certmint.dev/",
    ),
    (
        "certificate-secrettemplate-reserved-subdomain",
        certificate("bad-cert-subdomain", secretTemplate={"annotations": {"trust.certmint.dev/bundle": "x"}}),
        "spec.secretTemplate.annotations must not set trust.certmint.dev/bundle",
    ),
    # ------------------------------------------------------ CertificateRequest
    (
        "certificaterequest-missing-request",
        _without(certificate_request("bad-cr-norequest"), "spec", "request"),
        "spec.request: Required value",
    ),
    (
        "certificaterequest-missing-issuerref",
        _without(certificate_request("bad-cr-noissuer"), "spec", "issuerRef"),
        "spec.issuerRef: Required value",
    ),
    ("certificaterequest-not-pem", certificate_request("bad-cr-text", request="hello"), _BAD_CSR),
    (
        "certificaterequest-base64-instead-of-pem",
        certificate_request("bad-cr-base64", request="LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K"),
        _BAD_CSR,
    ),
    (
        "certificaterequest-certificate-instead-of-csr",
        certificate_request(
            "bad-cr-cert",
            request=CSR_PEM.replace("CERTIFICATE REQUEST", "CERTIFICATE"),
        ),
        _BAD_CSR,
    ),
    (
        "certificaterequest-truncated-pem",
        certificate_request("bad-cr-truncated", request=CSR_PEM.split("-----END", maxsplit=1)[0]),
        _BAD_CSR,
    ),
    (
        "certificaterequest-too-large",
        certificate_request("bad-cr-large", request=CSR_PEM + "x" * 65536),
        "spec.request: Too long",
    ),
    (
        "certificaterequest-duration-below-one-minute",
        certificate_request("bad-cr-short", duration="59s"),
        "spec.duration must be at least 1m",
    ),
    (
        "certificaterequest-duration-too-large-for-cel",
        certificate_request("bad-cr-huge", duration="3000000h"),
        "spec.duration must be at most 87600h (10 years)",
    ),
    (
        "certificaterequest-unknown-usage",
        certificate_request("bad-cr-usage", usages=["web server"]),
        "spec.usages[0]: Unsupported value",
    ),
    (
        "certificaterequest-issuerref-unknown-kind",
        certificate_request("bad-cr-kind", issuerRef={"name": "x", "kind": "Vault"}),
        "spec.issuerRef.kind: Unsupported value",
    ),
]

# Import-time sanity: test ids and object names are unique; expectations survive JSON escaping.
assert not [m for _, _, m in INVALID_OBJECTS if '"' in m or "\\" in m], "quote or backslash in a substring"
assert len({i for i, _, _ in INVALID_OBJECTS}) == len(INVALID_OBJECTS), "duplicate test id"
assert len({(o["kind"], o["metadata"]["name"]) for _, o, _ in INVALID_OBJECTS}) == len(INVALID_OBJECTS)
assert len({i for i, _ in VALID_OBJECTS}) == len(VALID_OBJECTS), "duplicate test id"
assert len({(o["kind"], o["metadata"]["name"]) for _, o in VALID_OBJECTS}) == len(VALID_OBJECTS)

# ---------------------------------------------- issue 11: names a policy can judge, SPIFFE IDs (items 2-4)
_SPIFFE = "each spiffe entry of spec.uris must be a SPIFFE ID such as spiffe://cluster.local/ns/default/sa/web"

VALID_OBJECTS.append(
    (
        "clusterissuer-ca-isolated-policy",
        cluster_issuer(
            "valid-clusterissuer-isolated",
            ca={"secretName": "root-ca"},
            policy={
                "allowedDNSNames": ["*.{namespace}.svc", "*.{namespace}.svc.cluster.local"],
                "allowedIPRanges": [],
                "allowedURIs": ["spiffe://cluster.local/ns/{namespace}/sa/*"],
                "allowedEmailAddresses": [],
                "allowedCommonNames": ["{namespace}:*"],
                "allowedSubject": {"organizations": ["Example Corp"], "countries": ["DE"]},
            },
        ),
    )
)
INVALID_OBJECTS += [
    (
        "certificate-spiffe-without-trust-domain-or-path",
        certificate("bad-cert-spiffe-empty", uris=["spiffe://"]),
        _SPIFFE,
    ),
    (
        "certificate-spiffe-without-path",
        certificate("bad-cert-spiffe-nopath", uris=["spiffe://cluster.local"]),
        _SPIFFE,
    ),
    (
        "certificate-spiffe-dot-dot-segment",
        certificate("bad-cert-spiffe-dots", uris=["spiffe://cluster.local/ns/../sa/web"]),
        _SPIFFE,
    ),
    (
        "certificate-spiffe-upper-case-trust-domain",
        certificate("bad-cert-spiffe-upper", uris=["spiffe://Cluster.Local/ns/default/sa/web"]),
        _SPIFFE,
    ),
]

assert len({i for i, _, _ in INVALID_OBJECTS}) == len(INVALID_OBJECTS), "duplicate test id"
assert len({(o["kind"], o["metadata"]["name"]) for _, o, _ in INVALID_OBJECTS}) == len(INVALID_OBJECTS)
assert len({i for i, _ in VALID_OBJECTS}) == len(VALID_OBJECTS), "duplicate test id"

# Issue 12: usages by key type (certmint.pki.usages.usage_problems says the same words), a CA needs a subject.
# The old CRD default list, stored in every object created before, stays acceptable with any key: the operator
# reads it as "not set" (the key's default) instead of refusing it.
_OLD_DEFAULT_USAGES = ["digital signature", "key encipherment", "server auth", "client auth"]
_ED25519 = {"algorithm": "Ed25519", "encoding": "PKCS8"}
VALID_OBJECTS += [
    ("certificate-ecdsa-old-default-usages", certificate("valid-cert-ecdsa-olddefault", usages=_OLD_DEFAULT_USAGES)),
    (
        "certificate-ed25519-old-default-usages-reordered",
        certificate("valid-cert-ed-olddefault", usages=list(reversed(_OLD_DEFAULT_USAGES)), privateKey=_ED25519),
    ),
    (
        "certificate-rsa-ca-old-default-usages",
        certificate(
            "valid-cert-rsaca-olddefault",
            commonName="Old RSA CA",
            isCA=True,
            usages=_OLD_DEFAULT_USAGES,
            privateKey={"algorithm": "RSA", "size": 2048},
        ),
    ),
    (
        "certificate-ca-named-by-subject-only",
        certificate("valid-cert-ca-subject", isCA=True, subject={"organizations": ["Example"]}, usages=["cert sign"]),
    ),
    (
        "certificate-ecdsa-key-agreement",
        certificate("valid-cert-ecdsa-ka", usages=["key agreement", "encipher only", "digital signature"]),
    ),
    (
        "certificate-rsa-key-encipherment",
        certificate("valid-cert-rsa-ke", usages=["key encipherment", "server auth"], privateKey={"algorithm": "RSA"}),
    ),
    ("certificaterequest-ca-usages", certificate_request("valid-cr-ca-usages", usages=["cert sign"], isCA=True)),
]
INVALID_OBJECTS += [
    (
        "certificate-ecdsa-key-encipherment",
        certificate("bad-cert-ecdsa-ke", usages=["digital signature", "key encipherment", "server auth"]),
        "spec.usages: 'key encipherment' and 'data encipherment' are not allowed with an ECDSA key (RFC 8813)",
    ),
    (
        "certificate-ecdsa-explicit-data-encipherment",
        certificate(
            "bad-cert-ecdsa-de", usages=["digital signature", "data encipherment"], privateKey={"algorithm": "ECDSA"}
        ),
        "spec.usages: 'key encipherment' and 'data encipherment' are not allowed with an ECDSA key (RFC 8813)",
    ),
    (
        "certificate-ed25519-key-agreement",
        certificate("bad-cert-ed-ka", usages=["digital signature", "key agreement"], privateKey=_ED25519),
        "spec.usages: 'key encipherment', 'data encipherment', 'key agreement', 'encipher only' and 'decipher "
        "only' are not allowed with an Ed25519 key (RFC 8410)",
    ),
    (
        "certificate-ed25519-key-encipherment",
        certificate("bad-cert-ed-ke", usages=["key encipherment"], privateKey=_ED25519),
        "are not allowed with an Ed25519 key (RFC 8410)",
    ),
    (
        "certificate-rsa-ca-key-encipherment",
        certificate(
            "bad-cert-rsaca-ke",
            commonName="RSA CA",
            isCA=True,
            usages=["digital signature", "key encipherment"],
            privateKey={"algorithm": "RSA", "size": 2048},
        ),
        "spec.usages: 'key encipherment' and 'data encipherment' are not allowed on an RSA CA certificate (RFC 3279)",
    ),
    (
        "certificate-rsa-key-agreement",
        certificate("bad-cert-rsa-ka", usages=["key agreement"], privateKey={"algorithm": "RSA"}),
        "spec.usages: 'key agreement', 'encipher only' and 'decipher only' are not allowed with an RSA key (RFC 3279)",
    ),
    (
        "certificate-cert-sign-without-isca",
        certificate("bad-cert-certsign", usages=["digital signature", "cert sign"]),
        "spec.usages: 'cert sign' and 'crl sign' are only allowed with isCA: true",
    ),
    (
        "certificate-encipher-only-without-key-agreement",
        certificate("bad-cert-enconly", usages=["digital signature", "encipher only"]),
        "spec.usages: 'encipher only' and 'decipher only' need 'key agreement' as well (RFC 5280)",
    ),
    (
        "certificate-encipher-and-decipher-only",
        certificate("bad-cert-encdec", usages=["key agreement", "encipher only", "decipher only"]),
        "spec.usages: 'encipher only' and 'decipher only' exclude each other",
    ),
    (
        "certificate-ca-without-subject",
        certificate("bad-cert-ca-nosubject", isCA=True, subject={"organizations": []}),
        "spec.commonName or spec.subject must be set when spec.isCA is true: a CA's subject is the issuer name",
    ),
    (
        "certificaterequest-crl-sign-without-isca",
        certificate_request("bad-cr-crlsign", usages=["crl sign"]),
        "spec.usages: 'cert sign' and 'crl sign' are only allowed with isCA: true",
    ),
    (
        "certificaterequest-decipher-only-without-key-agreement",
        certificate_request("bad-cr-deconly", usages=["decipher only"]),
        "spec.usages: 'encipher only' and 'decipher only' need 'key agreement' as well",
    ),
]

assert not [m for _, _, m in INVALID_OBJECTS if '"' in m or "\\" in m], "quote or backslash in a substring"
assert len({i for i, _, _ in INVALID_OBJECTS}) == len(INVALID_OBJECTS), "duplicate test id"
assert len({(o["kind"], o["metadata"]["name"]) for _, o, _ in INVALID_OBJECTS}) == len(INVALID_OBJECTS)
assert len({i for i, _ in VALID_OBJECTS}) == len(VALID_OBJECTS), "duplicate test id"
