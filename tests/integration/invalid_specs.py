"""Objects the API server must refuse at admission, with the reason it gives (the cases: invalid_specs.yaml).

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

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

from tests.integration.builders import resource

NEVER_IN_ERRORS = ("evaluating rule", "no such key", "no such overload")
NAMESPACE = "default"
CASES = Path(__file__).with_suffix(".yaml")

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


#: A kind's valid spec: a case's spec is merged into a Certificate's or CertificateRequest's and replaces an
#: Issuer's or ClusterIssuer's.
BASELINES: dict[str, dict[str, Any]] = {
    "Issuer": {"ca": {"secretName": "root-ca"}},
    "ClusterIssuer": {"selfSigned": {}},
    "Certificate": {
        "secretName": "web-tls",
        "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"},
        "dnsNames": ["web.default.svc"],
    },
    "CertificateRequest": {"request": CSR_PEM, "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"}},
}
MERGED = ("Certificate", "CertificateRequest")

#: Values too long or too many to write in the cases, by the name they have there.
COMPUTED: dict[str, Any] = {
    "$csr-base64": base64.b64encode(CSR_PEM.encode()).decode(),  # cert-manager's form (issue 17)
    "$csr-labelled-certificate": CSR_PEM.replace("CERTIFICATE REQUEST", "CERTIFICATE"),
    "$csr-truncated": CSR_PEM.split("-----END", maxsplit=1)[0],
    "$csr-too-large": CSR_PEM + "x" * 65536,
    "$65-characters": "c" * 65,
    "$101-dns-names": [f"web-{i}.example.com" for i in range(101)],
}


def _resolve(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        return copy.deepcopy(COMPUTED[value])
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    return value


def manifest(case: dict[str, Any]) -> dict[str, Any]:
    """The object a case describes: its kind's baseline with the case's spec, less the field it goes without."""
    kind, spec = case["kind"], _resolve(case.get("spec") or {})
    if kind in MERGED:
        spec = {**copy.deepcopy(BASELINES[kind]), **spec}
    obj = resource(
        kind, case["name"], spec or copy.deepcopy(BASELINES[kind]), None if kind == "ClusterIssuer" else NAMESPACE
    )
    if "without" in case:
        *parents, last = case["without"]
        node = obj
        for key in parents:
            node = node[key]
        del node[last]
    return obj


_CASES = yaml.safe_load(CASES.read_text())
# Accepted as written; each invalid object differs from one of these in one place.
VALID_OBJECTS: list[tuple[str, dict[str, Any]]] = [(c["id"], manifest(c)) for c in _CASES["valid"]]
INVALID_OBJECTS: list[tuple[str, dict[str, Any], str]] = [
    (c["id"], manifest(c), c["refused"]) for c in _CASES["invalid"]
]

# Import-time sanity: test ids and object names are unique; expectations survive JSON escaping.
assert not [m for _, _, m in INVALID_OBJECTS if '"' in m or "\\" in m], "quote or backslash in a substring"
assert len({i for i, _, _ in INVALID_OBJECTS}) == len(INVALID_OBJECTS), "duplicate test id"
assert len({(o["kind"], o["metadata"]["name"]) for _, o, _ in INVALID_OBJECTS}) == len(INVALID_OBJECTS)
assert len({i for i, _ in VALID_OBJECTS}) == len(VALID_OBJECTS), "duplicate test id"
assert len({(o["kind"], o["metadata"]["name"]) for _, o in VALID_OBJECTS}) == len(VALID_OBJECTS)
