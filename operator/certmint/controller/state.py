"""What the operator knows between events: compact records, never whole cached objects.

Memory must not grow with unrelated objects, and should grow slowly with our
own: a Certificate is kept as its parsed spec plus its status subtree; a
Secret only as its resourceVersion. Watch events older than what we already
hold (our own writes are recorded first) are ignored, so a late event cannot
roll the view back.
"""

from __future__ import annotations

import datetime
import enum
import json
import sys
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from cryptography import x509

from certmint.controller.status import CertificateStatus
from certmint.core.bundle import BundleSpec
from certmint.core.ca_rotation import IMMEDIATE, ROOT_REPLACEMENT, ReplacedRoot
from certmint.core.decisions import RENEW_REQUEST
from certmint.core.spec import CertificateRequestSpec, CertificateSpec, IssuerRef, IssuerSpec, SpecError, shared
from certmint.pki.keys import PrivateKey
from certmint.pki.signing import IssuedCertificate, SigningAuthority

T = TypeVar("T")
NamespacedName = tuple[str, str]


class Kind(enum.StrEnum):
    """What a work-queue key names: the kind of object to reconcile, or a chore on one."""

    CERTIFICATE = "Certificate"
    PRUNE_REQUESTS = "PruneRequests"  # low priority: delete a Certificate's requests beyond its history limit
    ISSUER = "Issuer"
    CLUSTER_ISSUER = "ClusterIssuer"
    REQUEST = "CertificateRequest"
    BUNDLE = "Bundle"
    POD_REQUEST = "PodCertificateRequest"


Key = tuple[Kind, str, str]  # (kind, namespace or "", name)
IssuerKey = Key  # Kind.ISSUER or Kind.CLUSTER_ISSUER


# What a Certificate's status usually looks like: deflate starts from it (a preset dictionary), so what
# every status has in common (field names, condition wording, the shape of timestamps) costs nearly
# nothing: about 150 bytes stay per certificate instead of 340-360 compressed alone. Only this process
# reads what it packed, so the dictionary may change between versions.
_STATUS_DICTIONARY: bytes = json.dumps(
    {
        "notBefore": "2026-01-01T00:00:00Z",
        "notAfter": "2026-01-01T00:00:00Z",
        "renewalTime": "2026-01-01T00:00:00Z",
        "serialNumber": "",
        "revision": 1,
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Issued",
                "message": "certificate is up to date and valid until 2026-01-01T00:00:00Z",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            },
            {
                "type": "Issuing",
                "status": "False",
                "reason": "Renewed",
                "message": "Issued certificate serial  (revision 1, CertificateRequest ), valid until "
                "2026-01-01T00:00:00Z; reason: renewal time 2026-01-01T00:00:00Z reached; the current certificate "
                "expires at 2026-01-01T00:00:00Z; Secret / does not exist; UpToDate next renewal at",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            },
        ],
        "failedIssuanceAttempts": 1,
        "lastFailureTime": "2026-01-01T00:00:00Z",
        "verified": {"generation": 1, "secretResourceVersion": "", "issuer": ""},
    },
    separators=(",", ":"),
).encode()


def pack_status(status: Mapping[str, Any]) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=_STATUS_DICTIONARY)  # raw deflate: no header
    return packer.compress(json.dumps(status, separators=(",", ":")).encode()) + packer.flush()


def unpack_status(packed: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(zlib.decompressobj(-15, zdict=_STATUS_DICTIONARY).decompress(packed))
    return value


def newer_or_equal(candidate: str, current: str | None) -> bool:
    """resourceVersions are opaque, but etcd-backed servers give integers; compare them when we can."""
    if current is None:
        return True
    if candidate.isdigit() and current.isdigit():
        return int(candidate) >= int(current)
    return True


@dataclass(frozen=True, slots=True)
class Settled:
    inputs: tuple[int, str | None, IssuerToken]
    waits_for_timer: bool  # a renewal or retry timer is part of the outcome; a fired timer means "look again"


IssuerToken = tuple[bool, str | None, str | None, int, bool, bool]  # see IssuerRecord.identity_token
NO_ISSUER: IssuerToken = (False, None, None, 0, False, False)


@dataclass(frozen=True, slots=True)
class Signed:
    """A certificate signed for a revision whose Secret write has not succeeded yet.

    Kept (in memory only) so that the next attempt stores this certificate instead of signing
    another one: a Secret write that keeps failing costs one CertificateRequest, not one per retry.
    """

    revision: int
    generation: int
    issuer: IssuerToken
    request_name: str
    key: PrivateKey
    issued: IssuedCertificate

    def reusable(self, revision: int, generation: int, issuer: IssuerToken, now: datetime.datetime) -> bool:
        """For the same revision, spec and issuer, while at most a third of its lifetime has passed (so that
        what is stored late is not due for renewal at once)."""
        issued = self.issued
        fresh = now < issued.not_before + (issued.not_after - issued.not_before) / 3
        return (self.revision, self.generation, self.issuer) == (revision, generation, issuer) and fresh


@dataclass(slots=True)
class CertificateRecord:
    """One per Certificate, so it is kept small: slots, and the status held as compressed compact JSON
    (about 330 bytes instead of a few kilobytes of dicts, or 770 as text), decoded only when a reconcile
    reads it (20 µs)."""

    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    spec: CertificateSpec | None
    spec_error: str | None
    status_z: bytes
    # The inputs of the last reconcile outcome; equal inputs skip the next one. Kept here rather than in a
    # dict of its own (one key and entry fewer per Certificate); a new record (new generation or object)
    # starts without one, as its inputs differ anyway.
    settled: Settled | None = None
    # A signed certificate not stored yet (see Signed); None nearly always.
    signed: Signed | None = None
    # The Certificate's RENEW_REQUEST annotation (core.decisions), None nearly always.
    renew_request: str | None = None
    # A root in rotation only: since when this process has seen nothing pending for its next step (the
    # announcement reached every trust set; no certificate left under the old root), and which step that is
    # (controller.certificates._RootProbe; certificate_plan._next_step).
    clear_since: tuple[str, datetime.datetime] | None = None

    def read_status(self) -> CertificateStatus:
        """The status, decoded (20 µs): once per reconcile pass, which then passes it along. A fresh dict each
        time, so changing it changes nothing here: store_status() does."""
        return cast(CertificateStatus, unpack_status(self.status_z))

    def store_status(self, value: Mapping[str, Any]) -> None:
        self.status_z = pack_status(value)


@dataclass
class IssuerRecord:
    kind: Kind
    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    spec: IssuerSpec | None
    spec_error: str | None
    status: dict[str, Any]
    # Learnt by the issuer reconciler:
    ready: bool = False
    reason: str = "Pending"
    message: str = "the issuer has not been checked yet"
    authority: SigningAuthority | None = None
    # False until the first check: a Certificate waits for it instead of reporting "not ready".
    checked: bool = False
    # When this process first saw the current CA (its fingerprint changed): certificates signed by the previous
    # one that their peers still trust are re-issued spread over the trust propagation time from then.
    ca_since: datetime.datetime | None = None
    rotation: dict[str, Any] | None = None  # status.rotation: a root rotation in progress (its or the CA Secret's)
    # Over how long after ca_since the certificates signed by the previous CA are re-issued (None: the trust
    # propagation time): longer when the rotation re-issue rate needs it for the certificates using it then.
    reissue_window: datetime.timedelta | None = None
    # A replaced CA Secret's rotation (core.ca_rotation), run by this issuer; its state is in status.rotation.
    replaced_root: ReplacedRoot | None = None
    # The trust anchors and the root signed under as of the last check that found the CA usable (kept while it is
    # not): what a replaced CA Secret is compared with. From status.trustAnchors at this process's first check.
    last_anchors: tuple[x509.Certificate, ...] = ()
    last_root: x509.Certificate | None = None
    status_read: bool = False  # the first check has taken over what the status recorded
    # The CA as its Secret gives it, before a replaced root's kept anchors are added (authority has them).
    secret_authority: SigningAuthority | None = None
    # Since when this process has seen nothing pending for the replaced root's next step, and which step.
    clear_since: tuple[str, datetime.datetime] | None = None
    # The issuer's ROOT_REPLACEMENT annotation says Immediate: a replaced root takes effect without phases.
    replace_immediately: bool = False

    @property
    def holds_signing(self) -> bool:
        """A replaced CA Secret's new root is being announced: nothing is signed under it yet."""
        return self.replaced_root is not None and self.replaced_root.holds_signing

    @property
    def identity_token(self) -> IssuerToken:
        """Changes whenever certificates signed by this issuer must be looked at again: readiness, the CA,
        its trust anchor (a root added to the CA Secret's ca.crt later), the spec's generation (a changed
        policy may now allow what it refused), its first check (certificates waiting for it), and whether it holds
        signing under a replaced CA Secret's new root (holds_signing). One shared
        tuple per value: every Certificate's settled inputs hold it."""
        authority = self.authority
        return shared(
            (
                self.ready,
                authority.fingerprint_sha256 if authority else None,
                authority.trust_bundle_fingerprint if authority else None,
                self.generation,
                self.checked,
                self.holds_signing,
            )
        )


@dataclass
class RequestRecord:
    namespace: str
    name: str
    uid: str
    resource_version: str
    spec: CertificateRequestSpec | None
    spec_error: str | None
    status: dict[str, Any]
    managed_by_certificate: bool


@dataclass
class BundleRecord:
    name: str
    uid: str
    generation: int
    resource_version: str
    spec: BundleSpec | None
    spec_error: str | None
    status: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BundleTarget:
    """A ConfigMap or Secret carrying the Bundle label, as its watch last delivered it: its resourceVersion, the
    Bundle its label names, the UIDs of its owners, and the digest (core.bundle.content_digest) of each data key."""

    resource_version: str
    bundle: str
    owner_uids: frozenset[str]
    digests: Mapping[str, str]


TargetKey = tuple[str, str, str]  # (ConfigMap or Secret, namespace, name)


@dataclass
class State:
    certificates: dict[NamespacedName, CertificateRecord] = field(default_factory=dict)
    issuers: dict[IssuerKey, IssuerRecord] = field(default_factory=dict)
    requests: dict[NamespacedName, RequestRecord] = field(default_factory=dict)
    # resourceVersion of each certmint-labelled Secret (None: known to be deleted).
    secret_versions: dict[NamespacedName, str | None] = field(default_factory=dict)
    # True once the Secret watch has listed every watched namespace: from then on a Secret missing
    # from secret_versions does not exist with our label, and need not be read before creating it.
    secrets_listed: bool = False
    # Secrets that exist without our label (a create answered 409): read them before writing.
    secrets_to_read: set[NamespacedName] = field(default_factory=set)
    # CertificateRequests being signed inline by the certificate reconciler right now.
    inflight_requests: set[NamespacedName] = field(default_factory=set)
    bundles: dict[str, BundleRecord] = field(default_factory=dict)
    # PodCertificateRequests for a certmint signer that are not answered yet, as their watch delivered them.
    pod_requests: dict[NamespacedName, dict[str, Any]] = field(default_factory=dict)
    # Answered by us, until the watch delivers the answer: the resourceVersion our status write returned.
    pod_requests_answered: dict[NamespacedName, str] = field(default_factory=dict)
    # Labels of every namespace (the Bundles' namespace selectors), and whether they have been listed.
    namespaces: dict[str, Mapping[str, str]] = field(default_factory=dict)
    namespaces_listed: bool = False
    bundle_targets: dict[TargetKey, BundleTarget] = field(default_factory=dict)

    def bundles_using_issuer(self, name: str) -> list[str]:
        return [b.name for b in self.bundles.values() if b.spec is not None and name in b.spec.issuers]

    def issuer_for(self, namespace: str, ref: IssuerRef) -> IssuerRecord | None:
        kind = Kind(ref.kind)
        return self.issuers.get((kind, "" if kind is Kind.CLUSTER_ISSUER else namespace, ref.name))

    def certificates_using(self, issuer: IssuerKey) -> list[NamespacedName]:
        kind, namespace, name = issuer
        found = []
        for key, rec in self.certificates.items():
            ref = rec.spec.issuer_ref if rec.spec else None
            if (
                ref
                and ref.kind == kind
                and ref.name == name
                and (kind == "ClusterIssuer" or rec.namespace == namespace)
            ):
                found.append(key)
        return found

    def pod_requests_for(self, signer_name: str) -> list[NamespacedName]:
        """Unanswered PodCertificateRequests that name ``signer_name``."""
        return [key for key, obj in self.pod_requests.items() if obj["spec"].get("signerName") == signer_name]

    def pod_signer(self, signer_name: str) -> IssuerRecord | None:
        """The ClusterIssuer whose spec.podCertificates names ``signer_name`` (the CRD makes it the one named so)."""
        name = signer_name.partition("/")[2]
        rec = self.issuers.get((Kind.CLUSTER_ISSUER, "", name))
        pods = rec.spec.pod_certificates if rec is not None and rec.spec is not None else None
        return rec if pods is not None and pods.signer_name == signer_name else None

    def requests_using(self, issuer: IssuerKey) -> list[NamespacedName]:
        kind, namespace, name = issuer
        return [
            key
            for key, rec in self.requests.items()
            if rec.spec
            and rec.spec.issuer_ref.kind == kind
            and rec.spec.issuer_ref.name == name
            and (kind == "ClusterIssuer" or rec.namespace == namespace)
        ]

    def certificates_with_secret(self, namespace: str, secret_name: str) -> list[NamespacedName]:
        return [
            key
            for key, rec in self.certificates.items()
            if rec.namespace == namespace and rec.spec is not None and rec.spec.secret_name == secret_name
        ]

    def secret_known_absent(self, namespace: str, name: str) -> bool:
        key = (namespace, name)
        return self.secrets_listed and self.secret_versions.get(key) is None and key not in self.secrets_to_read

    def issuers_with_ca_secret(self, namespace: str, secret_name: str, cluster_namespace: str) -> list[IssuerKey]:
        found = []
        for key, rec in self.issuers.items():
            if rec.spec is None or rec.spec.ca_secret_name != secret_name:
                continue
            secret_ns = cluster_namespace if rec.kind == "ClusterIssuer" else rec.namespace
            if secret_ns == namespace:
                found.append(key)
        return found


def _parse_spec(parse: Callable[[Mapping[str, Any]], T], body: Mapping[str, Any]) -> tuple[T | None, str | None]:
    """The typed spec, or the error a person reads in the object's status."""
    try:
        return parse(body.get("spec") or {}), None
    except SpecError as e:
        return None, str(e)


_UNIQUE_PER_CERTIFICATE = frozenset({"secretName", "commonName", "dnsNames", "ipAddresses", "uris", "emailAddresses"})


def _interned(value: Any) -> Any:
    """The same JSON with its repetitive strings interned: 10,000 specs share one copy of each issuer name,
    kind, algorithm, usage and duration instead of holding 10,000 equal strings each (names that are
    unique to a certificate are left alone: interning them would only add table entries)."""
    if isinstance(value, str):
        return sys.intern(value) if len(value) <= 64 else value
    if isinstance(value, dict):
        return {sys.intern(k): v if k in _UNIQUE_PER_CERTIFICATE else _interned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interned(v) for v in value]
    return value


def parse_certificate(body: dict[str, Any]) -> CertificateRecord:
    meta = body["metadata"]
    spec, error = _parse_spec(CertificateSpec.from_dict, {"spec": _interned(body.get("spec") or {})})
    return CertificateRecord(
        namespace=sys.intern(meta["namespace"]),  # 10,000 certificates share a few dozen namespaces
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation", 1)),
        resource_version=meta["resourceVersion"],
        spec=spec,
        spec_error=error,
        status_z=pack_status(body.get("status") or {}),
        renew_request=(meta.get("annotations") or {}).get(RENEW_REQUEST),
    )


def parse_issuer(kind: Kind, body: dict[str, Any]) -> IssuerRecord:
    meta = body["metadata"]
    spec, error = _parse_spec(IssuerSpec.from_dict, body)
    return IssuerRecord(
        kind=kind,
        namespace=meta.get("namespace") or "",
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation", 1)),
        resource_version=meta["resourceVersion"],
        spec=spec,
        spec_error=error,
        status=dict(body.get("status") or {}),
        replace_immediately=(meta.get("annotations") or {}).get(ROOT_REPLACEMENT) == IMMEDIATE,
    )


def parse_bundle(body: dict[str, Any]) -> BundleRecord:
    meta = body["metadata"]
    spec, error = _parse_spec(BundleSpec.from_dict, body)
    return BundleRecord(
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation", 1)),
        resource_version=meta["resourceVersion"],
        spec=spec,
        spec_error=error,
        status=dict(body.get("status") or {}),
    )


def parse_request(body: dict[str, Any], managed_label: str) -> RequestRecord:
    meta = body["metadata"]
    spec, error = _parse_spec(CertificateRequestSpec.from_dict, body)
    return RequestRecord(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        resource_version=meta["resourceVersion"],
        spec=spec,
        spec_error=error,
        status=dict(body.get("status") or {}),
        managed_by_certificate=managed_label in (meta.get("labels") or {}),
    )
