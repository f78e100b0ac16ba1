"""Kubernetes PodCertificateRequests (certificates.k8s.io/v1beta1): what certmint signs for a pod, or why not.

A pod that mounts a ``podCertificate`` projected volume gets its key made by the kubelet on its node; the kubelet
sends a PodCertificateRequest whose spec the API server fills with the pod's attested identity (namespace, pod,
ServiceAccount, node, with their UIDs) and a proof that the kubelet holds the key (``stubPKCS10Request``: an empty
CSR signed by it; older kubelets: ``pkixPublicKey`` and ``proofOfPossession``). The API server has checked that
proof and those names before certmint sees the request.

certmint takes the identity from those attested fields only: the certificate carries one name, the URI SAN
``spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>``, and nothing else the request says (the stub CSR's
own contents, the pod's ``unverifiedUserAnnotations``) reaches it. The issuer's policy judges that identity as it
judges a Certificate's: the namespace (``allowedNamespaces``), the key type (``allowedKeyAlgorithms``), the URI
(``allowedURIs``), the lifetime; ``podCertificates.allowedServiceAccounts`` adds the ServiceAccount.

The API's own rules for an issued certificate, which :func:`judge` keeps: notBefore within 5 minutes of the API
server's clock, a lifetime of at least 1 hour and at most the request's ``maxExpirationSeconds``, and
``beginRefreshAt`` at least 10 minutes after notBefore and 10 minutes before notAfter. certmint places
``beginRefreshAt`` as it places a Certificate's renewal (``podCertificates.refreshBeforePercentage`` of the lifetime
before expiry, a third by default, minus a jitter by the request's UID), so that a node's pods do not refresh
together.

Pure: a decoded request and the issuer's spec in, a :class:`Grant` or a :class:`Refusal` out.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from certmint.core import renewal
from certmint.core.policy import RequestedIdentity, check_policy, namespace_allowed, pattern_matches
from certmint.core.spec import PodCertificates, Policy, format_duration
from certmint.pki.csr import CSRInfo
from certmint.pki.keys import PKIError, PublicKey, key_algorithm, supported_public_key
from certmint.pki.names import quote
from certmint.pki.signing import SigningRequest
from certmint.pki.usages import default_usages

#: The API's bounds (k8s.io/kubernetes pkg/apis/certificates/validation, v1.36).
MIN_LIFETIME: Final = datetime.timedelta(hours=1)
REFRESH_MARGIN: Final = datetime.timedelta(minutes=10)
#: How far notBefore is set back from now (the API accepts up to 5 minutes either way).
BACKDATE: Final = datetime.timedelta(seconds=30)

#: Condition types and the reasons certmint gives (reasons match the API's CamelCase pattern).
ISSUED, DENIED, FAILED = "Issued", "Denied", "Failed"
NAMESPACE_NOT_ALLOWED: Final = "NamespaceNotAllowed"
SERVICE_ACCOUNT_NOT_ALLOWED: Final = "ServiceAccountNotAllowed"
UNSUPPORTED_KEY_TYPE: Final = "UnsupportedKeyType"  # the API's own well-known reason
POLICY_VIOLATION: Final = "PolicyViolation"
LIFETIME_TOO_SHORT: Final = "LifetimeTooShort"
UNREADABLE_KEY: Final = "UnreadableKey"


@dataclass(frozen=True, slots=True)
class PodRequest:
    """What a PodCertificateRequest attests and asks: its names and UIDs, the public key, the longest lifetime."""

    namespace: str
    name: str
    uid: str
    signer_name: str
    pod_name: str
    service_account: str
    node_name: str
    max_expiration: datetime.timedelta
    public_key: PublicKey
    key_algorithm: str
    key_size: int

    @property
    def where(self) -> str:
        return f"pod {self.namespace}/{self.pod_name} (ServiceAccount {self.service_account}, node {self.node_name})"


@dataclass(frozen=True, slots=True)
class Grant:
    """Sign ``request`` valid from ``not_before`` to ``not_after``; the kubelet refreshes from ``begin_refresh_at``."""

    request: SigningRequest
    not_before: datetime.datetime
    not_after: datetime.datetime
    begin_refresh_at: datetime.datetime
    spiffe_id: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A final answer other than a certificate: ``Denied`` (the policy refuses; the same request would be refused
    again) or ``Failed`` (it cannot be signed as asked). The kubelet does not retry either for that pod."""

    type: str
    reason: str
    message: str


def parse_request(obj: Mapping[str, Any]) -> PodRequest | Refusal:
    """The request as certmint judges it, or Failed when its public key cannot be read (the API server has checked
    it, so only a key type certmint does not support gets here)."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    try:
        public_key = _public_key(spec)
        algorithm, size = key_algorithm(public_key)
    except (PKIError, ValueError, TypeError) as exc:
        return Refusal(FAILED, UNREADABLE_KEY, f"the request's public key cannot be used: {exc}")
    return PodRequest(
        namespace=str(meta["namespace"]),
        name=str(meta["name"]),
        uid=str(meta.get("uid") or ""),
        signer_name=str(spec.get("signerName") or ""),
        pod_name=str(spec.get("podName") or ""),
        service_account=str(spec.get("serviceAccountName") or ""),
        node_name=str(spec.get("nodeName") or ""),
        max_expiration=datetime.timedelta(seconds=int(spec.get("maxExpirationSeconds") or 86400)),
        public_key=public_key,
        key_algorithm=algorithm,
        key_size=size,
    )


def _public_key(spec: Mapping[str, Any]) -> PublicKey:
    if spec.get("stubPKCS10Request"):
        csr = x509.load_der_x509_csr(base64.b64decode(spec["stubPKCS10Request"]))
        if not csr.is_signature_valid:  # the API server checked it too: the proof the kubelet holds the key
            raise PKIError("the stub CSR's signature does not verify")
        return supported_public_key(csr.public_key())
    if spec.get("pkixPublicKey"):
        key = load_der_public_key(base64.b64decode(spec["pkixPublicKey"]))
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
            raise PKIError(f"{type(key).__name__} is not supported (ECDSA, RSA or Ed25519)")
        return key
    raise PKIError("the request carries neither stubPKCS10Request nor pkixPublicKey")


def spiffe_id(pods: PodCertificates, namespace: str, service_account: str) -> str:
    return f"spiffe://{pods.trust_domain}/ns/{namespace}/sa/{service_account}"


def judge(
    req: PodRequest,
    pods: PodCertificates,
    policy: Policy,
    *,
    now: datetime.datetime,
    ca_not_before: datetime.datetime,
    ca_not_after: datetime.datetime,
    jitter_fraction: float,
) -> Grant | Refusal:
    """What to answer ``req`` with, for an issuer whose pod certificates are ``pods`` under ``policy`` and whose CA
    is valid from ``ca_not_before`` to ``ca_not_after``."""
    allowed_namespaces = policy.allowed_namespaces
    if allowed_namespaces is not None and not namespace_allowed(allowed_namespaces, req.namespace):
        listing = ", ".join(quote(p) for p in allowed_namespaces) or "none"
        return Refusal(
            DENIED,
            NAMESPACE_NOT_ALLOWED,
            f"namespace {quote(req.namespace)} may not use signer {req.signer_name} (policy.allowedNamespaces: "
            f"{listing})",
        )
    account = f"{req.namespace}/{req.service_account}"
    accounts = pods.allowed_service_accounts
    if accounts is not None and not any(_account_matches(p, account, req.namespace) for p in accounts):
        listing = ", ".join(quote(p) for p in accounts) or "none"
        return Refusal(
            DENIED,
            SERVICE_ACCOUNT_NOT_ALLOWED,
            f"ServiceAccount {quote(account)} may not get certificates from signer {req.signer_name} "
            f"(podCertificates.allowedServiceAccounts: {listing})",
        )
    keys = policy.allowed_key_algorithms
    if keys is not None and req.key_algorithm not in keys:
        return Refusal(
            DENIED,
            UNSUPPORTED_KEY_TYPE,
            f"key type {req.key_algorithm} {req.key_size} is not allowed by signer {req.signer_name} "
            f"(policy.allowedKeyAlgorithms: {', '.join(keys)}); set the podCertificate volume's keyType to one of them",
        )
    lifetime = req.max_expiration
    if policy.max_duration is not None:
        lifetime = min(lifetime, policy.max_duration)
    lifetime = datetime.timedelta(seconds=int(lifetime.total_seconds()))  # whole seconds, as certificates keep
    if lifetime < MIN_LIFETIME:
        return Refusal(
            DENIED,
            LIFETIME_TOO_SHORT,
            f"the issuer's policy.maxDuration {format_duration(lifetime)} is shorter than the 1h that Kubernetes "
            "requires of a pod certificate",
        )
    uri = spiffe_id(pods, req.namespace, req.service_account)
    identity = CSRInfo(uris=(uri,), public_key=req.public_key, key_algorithm=req.key_algorithm, key_size=req.key_size)
    violations = check_policy(
        policy,
        RequestedIdentity(identity, duration=lifetime, key_algorithm=req.key_algorithm, is_ca=False),
        namespace=req.namespace,
        cluster_scoped_issuer=True,
        self_signed=False,
    )
    if violations:
        return Refusal(DENIED, POLICY_VIOLATION, f"signer {req.signer_name} refuses: " + "; ".join(violations))
    not_before = max(now.replace(microsecond=0) - BACKDATE, ca_not_before)
    not_after = min(not_before + lifetime, ca_not_after.replace(microsecond=0))
    if not_after - not_before < MIN_LIFETIME:
        return Refusal(
            FAILED,
            LIFETIME_TOO_SHORT,
            f"the issuer's CA expires at {ca_not_after.isoformat()}, too soon for the 1h that Kubernetes requires of "
            "a pod certificate: renew the CA",
        )
    refresh = renewal.renewal_time(
        not_before,
        not_after,
        renew_before=None,
        renew_before_percentage=pods.refresh_before_percentage,
        jitter_key=req.uid or req.name,
        max_jitter_fraction=jitter_fraction,
    )
    refresh = min(max(refresh, not_before + REFRESH_MARGIN), not_after - REFRESH_MARGIN).replace(microsecond=0)
    usages = default_usages(req.key_algorithm, is_ca=False)
    request = SigningRequest(csr=identity, duration=not_after - not_before, usages=usages, is_ca=False)
    return Grant(request, not_before, not_after, refresh, uri)


def _account_matches(pattern: str, account: str, namespace: str) -> bool:
    """``namespace/name`` against a pattern whose ``*`` stays within one part and ``{namespace}`` is the pod's."""
    return pattern_matches(pattern, account, namespace=namespace, star="[^/]*")
