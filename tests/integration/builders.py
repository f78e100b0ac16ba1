"""Builders for test objects and readers for what the operator wrote."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from cryptography import x509
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.kubeutil import wait_for

GROUP, VERSION = "certmint.dev", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


#: The documented isolation policy of a ClusterIssuer shared by namespaces (README, "Security model"): each
#: namespace obtains only names of its own Services and SPIFFE IDs of its own ServiceAccounts; no IP
#: addresses, no email addresses, no subject attributes; at most a day.
ISOLATION_POLICY: dict[str, Any] = {
    "allowedDNSNames": ["*.{namespace}.svc", "*.{namespace}.svc.cluster.local"],
    "allowedIPRanges": [],
    "allowedURIs": ["spiffe://cluster.local/ns/{namespace}/sa/*"],
    "allowedEmailAddresses": [],
    "allowedSubject": {},
    "maxDuration": "24h",
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def resource(
    kind: str, name: str, spec: dict[str, Any], namespace: str | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A certmint object of ``kind`` (cluster-scoped without ``namespace``)."""
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def cluster_issuer(name: str, *, ca_secret: str | None = None, policy: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ca": {"secretName": ca_secret}} if ca_secret else {"selfSigned": {}}
    if policy:
        spec["policy"] = policy
    return resource("ClusterIssuer", name, spec)


def issuer(
    name: str, namespace: str, *, ca_secret: str | None = None, policy: dict[str, Any] | None = None
) -> dict[str, Any]:
    obj = cluster_issuer(name, ca_secret=ca_secret, policy=policy)
    return resource("Issuer", name, obj["spec"], namespace)


def certificate(
    name: str,
    namespace: str,
    *,
    issuer_name: str,
    issuer_kind: str = "ClusterIssuer",
    secret: str | None = None,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "secretName": secret or f"{name}-tls",
        "issuerRef": {"name": issuer_name, "kind": issuer_kind},
    }
    if not any(k in spec for k in ("commonName", "dnsNames", "ipAddresses", "uris", "emailAddresses")):
        # A Service's name, also as the subject: a selfSigned certificate needs a non-empty (issuer) name.
        body["dnsNames"] = [f"{name}.{namespace}.svc"]
        body["commonName"] = f"{name}.{namespace}.svc"
    body.update(spec)
    return resource("Certificate", name, body, namespace, labels)


class Certmint:
    """Typed access to certmint objects through the real API, for assertions."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        plural = obj["kind"].lower() + "s"
        ns = obj["metadata"].get("namespace")
        if ns:
            return dict(self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, obj))
        return dict(self.custom.create_cluster_custom_object(GROUP, VERSION, plural, obj))

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        plural = kind.lower() + "s"
        if namespace:
            return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))
        return dict(self.custom.get_cluster_custom_object(GROUP, VERSION, plural, name))

    def patch(self, kind: str, name: str, namespace: str | None, body: dict[str, Any]) -> None:
        plural = kind.lower() + "s"
        if namespace:
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, body)
        else:
            self.custom.patch_cluster_custom_object(GROUP, VERSION, plural, name, body)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        plural = kind.lower() + "s"
        if namespace:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        else:
            self.custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)

    def items(self, kind: str, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        """The objects of ``kind`` in ``namespace`` (with the label selector, if given)."""
        selected = {"label_selector": label_selector} if label_selector else {}
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, kind.lower() + "s", **selected)
        return list(listed["items"])

    def requests_of(self, certificate_name: str, namespace: str) -> list[dict[str, Any]]:
        """The CertificateRequests the operator made for a Certificate (by the label it puts on them)."""
        return self.items("CertificateRequest", namespace, f"certmint.dev/certificate-name={certificate_name}")

    def requests_owned_by(self, certificate_uid: str, namespace: str) -> list[dict[str, Any]]:
        """The CertificateRequests whose owner is the Certificate with this uid, whatever their labels say."""
        return [
            r
            for r in self.items("CertificateRequest", namespace)
            if any(o["uid"] == certificate_uid for o in r["metadata"].get("ownerReferences") or [])
        ]

    def condition(self, kind: str, name: str, namespace: str | None, type_: str) -> dict[str, Any] | None:
        return condition_of(self.get(kind, name, namespace), type_)

    def ready(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object if its Ready condition is True now, else None (for :func:`wait_for`)."""
        obj = self.get(kind, name, namespace)
        c = condition_of(obj, "Ready")
        return obj if c and c["status"] == "True" else None

    def wait_condition(
        self,
        kind: str,
        name: str,
        namespace: str | None,
        type_: str = "Ready",
        status: str = "True",
        timeout: float = 30,
        reason: str | None = None,
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            c = self.condition(kind, name, namespace, type_)
            if c and c["status"] == status and (reason is None or c["reason"] == reason):
                return c
            return None

        try:
            return wait_for(
                check,
                f"{kind} {namespace}/{name} {type_}={status}" + (f" ({reason})" if reason else ""),
                timeout=timeout,
            )
        except AssertionError as e:
            obj = self.get(kind, name, namespace)
            raise AssertionError(f"{e}; status now: {obj.get('status')}") from None

    def wait_ready(self, kind: str, name: str, namespace: str | None = None, timeout: float = 30) -> dict[str, Any]:
        self.wait_condition(kind, name, namespace, "Ready", "True", timeout)
        return self.get(kind, name, namespace)

    def secret(self, name: str, namespace: str) -> client.V1Secret | None:
        try:
            return self.core.read_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def secret_data(self, name: str, namespace: str) -> dict[str, bytes]:
        s = self.secret(name, namespace)
        assert s is not None, f"Secret {namespace}/{name} does not exist"
        return {k: base64.b64decode(v) for k, v in (s.data or {}).items()}

    def namespace(self, name: str) -> str:
        self.core.create_namespace({"metadata": {"name": name}})
        return name

    def namespace_and_issuer(self, prefix: str) -> tuple[str, str]:
        """A new namespace and a new selfSigned ClusterIssuer, both named after ``prefix``."""
        ns = self.namespace(unique(prefix))
        issuer = unique(f"{prefix}-ss")
        self.create(cluster_issuer(issuer))
        return ns, issuer


def condition_of(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The condition of ``type_`` in an object's status, if it has one."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return None


def leaf(data: dict[str, bytes]) -> x509.Certificate:
    return x509.load_pem_x509_certificates(data["tls.crt"])[0]


def serial_hex(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "x")


def ca_chain(
    cm: Certmint,
    root: str,
    namespace: str,
    *,
    policy: dict[str, Any] | None = None,
    root_spec: dict[str, Any] | None = None,
) -> str:
    """The usual bootstrap: selfSigned ClusterIssuer → CA Certificate in ``namespace`` → CA ClusterIssuer ``root``
    (with ``policy``); ``root_spec`` replaces the CA Certificate's spec beyond its issuer and Secret."""
    cm.create(cluster_issuer(f"{root}-selfsigned"))
    spec = root_spec or {"commonName": f"{root} CA", "isCA": True, "duration": "24h"}
    cm.create(certificate(root, namespace, issuer_name=f"{root}-selfsigned", **spec))
    cm.wait_ready("Certificate", root, namespace)
    cm.create(cluster_issuer(root, ca_secret=f"{root}-tls", policy=policy))
    cm.wait_ready("ClusterIssuer", root)
    return root
