"""API objects as the API server returns them (JSON dicts), for the CLI's pure tests; certificates from
tests/unit/builders.py."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from certmint.pki.keys import encode_private_key
from certmint.pki.signing import IssuedCertificate, SigningAuthority
from certmint.pki.timestamps import rfc3339
from tests.unit.builders import NOW, CAPair, build_ca, cached_key, certificate_spec, issue_for

JSON = dict[str, Any]


def secret(
    data: Mapping[str, bytes],
    *,
    name: str = "web-tls",
    namespace: str = "shop",
    type_: str = "kubernetes.io/tls",
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": type_,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": dict(annotations or {}),
            "labels": dict(labels or {}),
        },
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


class Pki:
    """A root, an intermediate under it, and a leaf issued under the intermediate as the operator would."""

    def __init__(self, now: datetime = NOW) -> None:
        self.root: CAPair = build_ca("CLI Test Root", key=cached_key("ECDSA", 384))
        self.intermediate: CAPair = build_ca("CLI Test Intermediate", parent=self.root)
        self.authority = SigningAuthority.from_pem(
            self.intermediate.cert_pem, self.intermediate.key_pem, ca_crt=self.root.cert_pem, now=now
        )
        self.spec = certificate_spec(uris=["spiffe://cluster.local/ns/shop/sa/web"])
        self.issued: IssuedCertificate
        self.issued, key = issue_for(self.spec, self.authority, now=now)
        self.key_pem = encode_private_key(key, "PKCS8")

    def secret_data(self) -> dict[str, bytes]:
        """What certmint writes: leaf + intermediate, the key, the root as ca.crt."""
        return {"tls.crt": self.issued.chain_pem, "tls.key": self.key_pem, "ca.crt": self.issued.ca_pem}


CERTMINT_ANNOTATIONS = {
    "certmint.dev/certificate-name": "web",
    "certmint.dev/certificate-uid": "uid-web",
    "certmint.dev/certificate-revision": "3",
    "certmint.dev/issuer-name": "mesh-ca",
    "certmint.dev/issuer-kind": "ClusterIssuer",
}


def at(delta: timedelta, now: datetime = NOW) -> str:
    return rfc3339(now + delta)


def condition(type_: str, status: str, reason: str, message: str = "", since: timedelta = timedelta(0)) -> JSON:
    return {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": at(since)}


def certificate(name: str = "web", namespace: str = "shop", **status: Any) -> JSON:
    return {
        "apiVersion": "certmint.dev/v1alpha1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "annotations": {}},
        "spec": {
            "secretName": f"{name}-tls",
            "issuerRef": {"name": "mesh-ca", "kind": "ClusterIssuer"},
            "dnsNames": [f"{name}.{namespace}.svc"],
        },
        "status": status,
    }


def request(name: str, created: timedelta, *, owner: str = "uid-web", revision: int = 1, **conditions: str) -> JSON:
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": at(created),
            "ownerReferences": [{"uid": owner}],
            "annotations": {"certmint.dev/certificate-revision": str(revision)},
        },
        "status": {"conditions": [condition(t, s, t) for t, s in conditions.items()]},
    }


def event(reason: str, seen: timedelta, message: str, type_: str = "Normal", count: int = 1) -> JSON:
    return {"type": type_, "reason": reason, "message": message, "count": count, "lastTimestamp": at(seen)}
