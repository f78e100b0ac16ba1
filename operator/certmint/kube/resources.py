"""Typed operations on the objects certmint reads and writes, over :class:`KubeClient`.

Every API call of the reconcilers goes through one of these functions, so the
list below is the complete set of the operator's API verbs (and of the RBAC
rules the Helm chart grants).
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from certmint.kube.client import JSON, ApiError, KubeClient
from certmint.pki.timestamps import rfc3339

GROUP = "certmint.dev"
VERSION = "v1alpha1"
API = f"/apis/{GROUP}/{VERSION}"

# The label every Secret written by certmint carries; the operator watches Secrets with this selector only.
CERTIFICATE_NAME_LABEL = f"{GROUP}/certificate-name"
REVISION_ANNOTATION = f"{GROUP}/certificate-revision"


@dataclass(frozen=True)
class ObjectRef:
    """What an Event or owner reference needs to know about an object."""

    kind: str
    namespace: str | None
    name: str
    uid: str
    api_version: str = f"{GROUP}/{VERSION}"


def plural(kind: str) -> str:
    return {
        "Certificate": "certificates",
        "CertificateRequest": "certificaterequests",
        "Issuer": "issuers",
        "ClusterIssuer": "clusterissuers",
        "Bundle": "bundles",
    }[kind]


def object_path(kind: str, namespace: str | None, name: str | None = None) -> str:
    base = f"{API}/namespaces/{namespace}/{plural(kind)}" if namespace else f"{API}/{plural(kind)}"
    return f"{base}/{name}" if name else base


def secret_path(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/secrets"
    return f"{base}/{name}" if name else base


# -- Secrets -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretData:
    """The parts of a Secret the reconcilers look at, decoded."""

    name: str
    namespace: str
    resource_version: str
    type: str
    data: Mapping[str, bytes]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    owner_uids: frozenset[str]


def _decode_secret(obj: JSON) -> SecretData:
    meta = obj["metadata"]
    return SecretData(
        name=meta["name"],
        namespace=meta["namespace"],
        resource_version=meta["resourceVersion"],
        type=obj.get("type", "Opaque"),
        data={k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()},
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
        owner_uids=owner_uids(obj),
    )


async def read_secret(api: KubeClient, namespace: str, name: str) -> SecretData | None:
    obj = await api.get(secret_path(namespace, name))
    return _decode_secret(obj) if obj else None


def _b64(data: Mapping[str, bytes | None]) -> dict[str, str | None]:
    """Base64 for the API; None stays None (a merge patch removes that key)."""
    return {k: None if v is None else base64.b64encode(v).decode() for k, v in data.items()}


async def create_tls_secret(
    api: KubeClient,
    namespace: str,
    name: str,
    *,
    data: Mapping[str, bytes],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    owner: ObjectRef | None,
) -> SecretData:
    meta: JSON = {"name": name, "labels": dict(labels), "annotations": dict(annotations)}
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(owner)]
    body = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": meta, "data": _b64(data)}
    return _decode_secret(await api.create(secret_path(namespace), body))


async def update_secret(
    api: KubeClient,
    namespace: str,
    name: str,
    *,
    resource_version: str,
    data: Mapping[str, bytes | None] | None,
    labels: Mapping[str, str],
    annotations: Mapping[str, str | None],
    owner: ObjectRef | None = None,
) -> SecretData:
    """One merge patch, guarded by resourceVersion: key and certificate change together or not at all.

    ``owner``: an owner reference to set (the caller knows it is missing), or None to leave them alone.
    A None value in ``data`` or ``annotations`` removes that key.
    """
    meta: JSON = {"resourceVersion": resource_version, "labels": dict(labels), "annotations": dict(annotations)}
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(owner)]
    body: JSON = {"metadata": meta}
    if data is not None:
        body["data"] = _b64(data)
    return _decode_secret(await api.merge_patch(secret_path(namespace, name), body))


def owner_reference(owner: ObjectRef) -> JSON:
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }


# -- Bundle targets and ClusterTrustBundles ----------------------------------------------------------------

# The label on every object a Bundle writes (its value: the Bundle's name); the operator watches those only.
BUNDLE_LABEL = f"{GROUP}/bundle"
TARGET_KINDS = {"ConfigMap": "configmaps", "Secret": "secrets"}
CTB_GROUP = "certificates.k8s.io"
CTB_VERSIONS = ("v1", "v1beta1")  # the first one the API server serves is used


def target_path(kind: str, namespace: str | None, name: str | None = None) -> str:
    """A Bundle target's collection (every namespace when ``namespace`` is None) or object."""
    base = f"/api/v1/namespaces/{namespace}/{TARGET_KINDS[kind]}" if namespace else f"/api/v1/{TARGET_KINDS[kind]}"
    return f"{base}/{name}" if name else base


def target_texts(kind: str, obj: JSON) -> dict[str, str]:
    """The text of every data key of a ConfigMap (binaryData too) or Secret (``kind``) as the API returns it."""

    def decoded(values: Any) -> dict[str, str]:
        return {
            k: base64.b64decode(v).decode(errors="replace") for k, v in (values or {}).items() if isinstance(v, str)
        }

    if kind == "Secret":
        return decoded(obj.get("data"))
    plain = {k: v for k, v in (obj.get("data") or {}).items() if isinstance(v, str)}
    return {**decoded(obj.get("binaryData")), **plain}


def _target_payload(kind: str, key: str, text: str) -> JSON:
    if kind == "Secret":
        return {"data": {key: base64.b64encode(text.encode()).decode()}}
    return {"data": {key: text}}


async def create_target(
    api: KubeClient, kind: str, namespace: str, name: str, *, key: str, text: str, owner: ObjectRef
) -> JSON:
    meta: JSON = {"name": name, "labels": {BUNDLE_LABEL: owner.name}, "ownerReferences": [owner_reference(owner)]}
    body: JSON = {"apiVersion": "v1", "kind": kind, "metadata": meta, **_target_payload(kind, key, text)}
    if kind == "Secret":
        body["type"] = "Opaque"
    return await api.create(target_path(kind, namespace), body)


async def update_target(
    api: KubeClient, kind: str, namespace: str, name: str, *, resource_version: str, key: str, text: str
) -> JSON:
    """One merge patch of the Bundle's key, guarded by resourceVersion (other keys are left alone)."""
    body: JSON = {"metadata": {"resourceVersion": resource_version}, **_target_payload(kind, key, text)}
    return await api.merge_patch(target_path(kind, namespace, name), body)


async def read_target(api: KubeClient, kind: str, namespace: str, name: str) -> JSON | None:
    """A ConfigMap or Secret: a Bundle's target, or its source (in the operator's namespace)."""
    return await api.get(target_path(kind, namespace, name))


async def delete_target(api: KubeClient, kind: str, namespace: str, name: str, *, resource_version: str) -> bool:
    """Delete one of ours, only as we last saw it (a precondition on its resourceVersion)."""
    return await api.delete(target_path(kind, namespace, name), resource_version=resource_version)


async def cluster_trust_bundle_version(api: KubeClient) -> str | None:
    """The certificates.k8s.io version that serves clustertrustbundles here, or None when none does."""
    for version in CTB_VERSIONS:
        found = await api.get(f"/apis/{CTB_GROUP}/{version}")
        if found and any(r.get("name") == "clustertrustbundles" for r in found.get("resources") or []):
            return version
    return None


def cluster_trust_bundle_path(version: str, name: str | None = None) -> str:
    base = f"/apis/{CTB_GROUP}/{version}/clustertrustbundles"
    return f"{base}/{name}" if name else base


async def read_cluster_trust_bundle(api: KubeClient, version: str, name: str) -> JSON | None:
    return await api.get(cluster_trust_bundle_path(version, name))


async def create_cluster_trust_bundle(
    api: KubeClient,
    version: str,
    name: str,
    *,
    pem: str,
    owner: ObjectRef,
    signer_name: str | None = None,
    label: str = BUNDLE_LABEL,
) -> JSON:
    """A ClusterTrustBundle owned by ``owner`` and labelled ``label: <owner's name>``; linked to ``signer_name`` when
    given (its name must then start with the signer name, "/" written ":", and ":")."""
    spec: JSON = {"trustBundle": pem}
    if signer_name is not None:
        spec["signerName"] = signer_name
    body: JSON = {
        "apiVersion": f"{CTB_GROUP}/{version}",
        "kind": "ClusterTrustBundle",
        "metadata": {"name": name, "labels": {label: owner.name}, "ownerReferences": [owner_reference(owner)]},
        "spec": spec,
    }
    return await api.create(cluster_trust_bundle_path(version), body)


async def update_cluster_trust_bundle(
    api: KubeClient, version: str, name: str, *, resource_version: str, pem: str
) -> JSON:
    body: JSON = {"metadata": {"resourceVersion": resource_version}, "spec": {"trustBundle": pem}}
    return await api.merge_patch(cluster_trust_bundle_path(version, name), body)


# -- PodCertificateRequests --------------------------------------------------------------------------------

PCR_VERSION = "v1beta1"  # the one version Kubernetes 1.36 serves them in


async def pod_certificate_requests_served(api: KubeClient) -> bool:
    """Whether the API server serves certificates.k8s.io/v1beta1 podcertificaterequests (feature gate
    PodCertificateRequest and its runtime-config)."""
    found = await api.get(f"/apis/{CTB_GROUP}/{PCR_VERSION}")
    return found is not None and any(r.get("name") == "podcertificaterequests" for r in found.get("resources") or [])


def pod_certificate_requests_path(namespace: str | None = None, name: str | None = None) -> str:
    base = f"/apis/{CTB_GROUP}/{PCR_VERSION}"
    if namespace is None:
        return f"{base}/podcertificaterequests"
    path = f"{base}/namespaces/{namespace}/podcertificaterequests"
    return f"{path}/{name}" if name else path


async def answer_pod_certificate_request(api: KubeClient, namespace: str, name: str, status: JSON) -> JSON:
    """Write a PodCertificateRequest's final status (Issued with the chain and times, or Denied, or Failed): one
    merge patch of the status subresource; the API server refuses a second answer."""
    return await api.merge_patch(pod_certificate_requests_path(namespace, name) + "/status", {"status": status})


# -- certmint objects ------------------------------------------------------------------------------------


async def patch_status(
    api: KubeClient, kind: str, namespace: str | None, name: str, status: JSON, *, resource_version: str | None = None
) -> JSON:
    """Merge ``status`` into the object's status; with ``resource_version``, only over that version (else 409)."""
    body: JSON = {"status": status}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    return await api.merge_patch(object_path(kind, namespace, name) + "/status", body)


async def create_certificate_request(
    api: KubeClient,
    namespace: str,
    *,
    name: str | None,
    certificate: ObjectRef,
    label: str,
    revision: int,
    spec: JSON,
) -> JSON:
    """Create a Certificate's request; ``name`` None generates one. ``label``: the Certificate's name as a label
    value (names longer than a label value may be are shortened by the caller)."""
    meta: JSON = {
        "labels": {CERTIFICATE_NAME_LABEL: label},
        "annotations": {REVISION_ANNOTATION: str(revision)},
        "ownerReferences": [owner_reference(certificate)],
    }
    if name is None:
        meta["generateName"] = f"{certificate.name[:240]}-"
    else:
        meta["name"] = name
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CertificateRequest", "metadata": meta, "spec": spec}
    return await api.create(object_path("CertificateRequest", namespace), body)


async def get_certificate_request(api: KubeClient, namespace: str, name: str) -> JSON | None:
    return await api.get(object_path("CertificateRequest", namespace, name))


async def list_certificate_requests(api: KubeClient, namespace: str, label: str) -> list[JSON]:
    """The requests labelled with a Certificate's label value (filter by owner UID for an exact answer)."""
    return await api.list(
        object_path("CertificateRequest", namespace), label_selector=f"{CERTIFICATE_NAME_LABEL}={label}"
    )


def owner_uids(obj: JSON) -> frozenset[str]:
    return frozenset(o["uid"] for o in (obj.get("metadata") or {}).get("ownerReferences") or [])


async def delete_certificate_request(api: KubeClient, namespace: str, name: str) -> bool:
    return await api.delete(object_path("CertificateRequest", namespace, name))


# -- Events --------------------------------------------------------------------------------------------


async def post_event(
    api: KubeClient,
    obj: ObjectRef,
    *,
    type_: str,
    reason: str,
    message: str,
    component: str,
    now: datetime.datetime,
    fallback_namespace: str,
) -> None:
    """A core/v1 Event; failures to post are swallowed by the caller's choice, not here."""
    namespace = obj.namespace or fallback_namespace
    stamp = rfc3339(now)
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{obj.name[:200]}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj.api_version,
            "kind": obj.kind,
            "name": obj.name,
            "namespace": obj.namespace or "",
            "uid": obj.uid,
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    await api.create(f"/api/v1/namespaces/{namespace}/events", body)


__all__ = ["ApiError"]
