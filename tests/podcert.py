"""PodCertificateRequests as a kubelet makes them, for the unit and integration tiers: a pod key, the empty CSR it
signs (``stubPKCS10Request``) or the deprecated ``pkixPublicKey`` + ``proofOfPossession`` pair, and the object.

The names and UIDs are whatever the test says: an admin may create a PodCertificateRequest for a pod, ServiceAccount
and node that do not exist (only a node caller is cross-checked, by NodeRestriction), which is what lets the
integration tier run without a kubelet.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

PCR_GROUP: Final = "certificates.k8s.io"
PCR_VERSION: Final = "v1beta1"
PCR_PLURAL: Final = "podcertificaterequests"

PodKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def pod_key(key_type: str) -> PodKey:
    """A key of one of the kubelet's ``keyType`` values (ECDSAP256, ECDSAP384, ED25519, RSA3072, RSA4096 …)."""
    match key_type:
        case "ECDSAP256":
            return ec.generate_private_key(ec.SECP256R1())
        case "ECDSAP384":
            return ec.generate_private_key(ec.SECP384R1())
        case "ECDSAP521":
            return ec.generate_private_key(ec.SECP521R1())
        case "ED25519":
            return ed25519.Ed25519PrivateKey.generate()
        case "RSA3072" | "RSA4096":
            return rsa.generate_private_key(65537, int(key_type[3:]))
    raise ValueError(f"unknown keyType {key_type}")


def _hash_for(key: PodKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def stub_csr(key: PodKey) -> bytes:
    """The empty PKCS#10 request the kubelet signs with the pod's key, DER."""
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, _hash_for(key))
    return csr.public_bytes(serialization.Encoding.DER)


def spki(key: PodKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def proof_of_possession(key: PodKey, pod_uid: str) -> bytes:
    """The deprecated proof: the pod UID signed as the API server checks it (v1.36 validation)."""
    data = pod_uid.encode()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    hashed = digest.finalize()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(hashed, ec.ECDSA(Prehashed(hashes.SHA256())))
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
    return key.sign(hashed, pss, Prehashed(hashes.SHA256()))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pcr(
    namespace: str,
    name: str,
    *,
    signer_name: str,
    key: PodKey,
    service_account: str = "default",
    pod_name: str | None = None,
    node_name: str = "node-1",
    max_expiration_seconds: int | None = None,
    legacy_key: bool = False,
    uid: str | None = None,
) -> dict[str, Any]:
    """A PodCertificateRequest as the kubelet would send it (made-up UIDs); ``legacy_key`` sends the deprecated
    pkixPublicKey + proofOfPossession instead of stubPKCS10Request. ``uid`` is the object's own (unit tests: the
    API server sets it)."""
    pod_uid = str(uuid.uuid4())
    spec: dict[str, Any] = {
        "signerName": signer_name,
        "podName": pod_name or f"{name}-pod",
        "podUID": pod_uid,
        "serviceAccountName": service_account,
        "serviceAccountUID": str(uuid.uuid4()),
        "nodeName": node_name,
        "nodeUID": str(uuid.uuid4()),
    }
    if max_expiration_seconds is not None:
        spec["maxExpirationSeconds"] = max_expiration_seconds
    if legacy_key:
        spec["pkixPublicKey"] = b64(spki(key))
        spec["proofOfPossession"] = b64(proof_of_possession(key, pod_uid))
    else:
        spec["stubPKCS10Request"] = b64(stub_csr(key))
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if uid is not None:
        metadata["uid"] = uid
    return {
        "apiVersion": f"{PCR_GROUP}/{PCR_VERSION}",
        "kind": "PodCertificateRequest",
        "metadata": metadata,
        "spec": spec,
    }


def condition(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The request's answer (its Issued, Denied or Failed condition), None while it is pending."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Issued", "Denied", "Failed"):
            return dict(c)
    return None
