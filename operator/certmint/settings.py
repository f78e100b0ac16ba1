"""Operator configuration: one frozen object, read from environment variables once at start-up.

Every variable, its default and why:

CERTMINT_NAMESPACE            (default: the pod's namespace, else "certmint")
    Where ClusterIssuer CA Secrets live (the "cluster resource namespace").
CERTMINT_WORKERS              (default 16)
    Concurrent reconciles. Reconciles are I/O-bound; 16 keeps the API server busy without flooding it.
CERTMINT_MAX_CONNECTIONS      (default 32)
    Upper bound on concurrent HTTP connections to the API server: the client-side rate limit.
CERTMINT_HTTP_PORT            (default 8080; 0 disables)
    Port of /metrics, /healthz and /readyz.
CERTMINT_JITTER_FRACTION      (default 0.1)
    Renewals move earlier by a stable per-certificate amount below this fraction of the lifetime,
    so that certificates issued together do not renew together. A herd of certificates is issued
    at the rate the control plane allows; a renewal costs it more than a first issuance (a replace
    instead of a create), so the jitter window must be wider than the herd's issuance.
CERTMINT_TRUST_PROPAGATION_SECONDS (default 120)
    How long a root's next one stays in ca.crt before it replaces the current one, and twice this long
    the old one stays after: time for the kubelet to refresh Secret volumes (its default sync period
    is 1 minute, plus jitter) and for applications to reload them. 0 replaces a root at once.
CERTMINT_ROTATION_REISSUE_RATE (default 20)
    After an issuer's CA changes, the certificates it signed under the previous CA that their peers still
    trust are re-issued spread over the trust propagation time, or longer when needed to keep the average
    at this many re-issues per second (10,000 certificates at 20/s: 500 s). Renewals that fall due meanwhile
    are not held back.
CERTMINT_MIN_RENEWAL_INTERVAL_SECONDS (default 30)
    No certificate is renewed sooner than this after it was issued (at most half its lifetime): a
    floor under the time between two issuances of one Certificate, whatever its renewBefore says.
CERTMINT_ISSUER_RECHECK_SECONDS (default 60)
    How often an issuer's CA Secret is re-read when nothing else triggers it (CA Secrets made by
    certmint itself are watched and trigger immediately).
CERTMINT_KEYGEN_PROCESSES     (default 1)
    Worker processes for RSA key generation (started on first use; ECDSA/Ed25519 keys are made inline).
CERTMINT_POST_EVENTS          (default true)
    Post Kubernetes Events for issuance, renewal and failures.
CERTMINT_LEADER_ELECTION      (default true)
    Reconcile only while holding the Lease "certmint-operator" in CERTMINT_NAMESPACE, so that with
    several replicas exactly one writes; the others keep their state warm for a fast failover.
CERTMINT_LEASE_DURATION_SECONDS (default 15), CERTMINT_LEASE_RENEW_SECONDS (default 5),
CERTMINT_LEASE_RETRY_SECONDS  (default 2)
    A standby takes over at most lease-duration + retry seconds after the leader stops renewing.
CERTMINT_WATCH_NAMESPACES     (default: empty = the whole cluster)
    Comma-separated namespaces to watch instead of the whole cluster (same as --namespace).
POD_NAME                      (default: hostname-pid)
    This replica's identity in the Lease.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _pod_namespace() -> str:
    try:
        return _SA_NAMESPACE.read_text().strip() or "certmint"
    except OSError:
        return "certmint"


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


@dataclass(frozen=True)
class Settings:
    namespace: str = "certmint"
    workers: int = 16
    max_connections: int = 32
    http_port: int = 8080
    jitter_fraction: float = 0.1
    min_renewal_interval: float = 30.0
    trust_propagation_seconds: float = 120.0
    rotation_reissue_rate: float = 20.0
    issuer_recheck_seconds: float = 60.0
    post_events: bool = True
    keygen_processes: int = 1
    leader_election: bool = True
    lease_duration: float = 15.0
    lease_renew: float = 5.0
    lease_retry: float = 2.0
    identity: str = ""
    watch_namespaces: tuple[str, ...] = ()
    pod_certificates: bool = False  # sign PodCertificateRequests for ClusterIssuers that enable it

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        try:
            settings = cls(
                namespace=e.get("CERTMINT_NAMESPACE") or _pod_namespace(),
                workers=int(e.get("CERTMINT_WORKERS", cls.workers)),
                max_connections=int(e.get("CERTMINT_MAX_CONNECTIONS", cls.max_connections)),
                http_port=int(e.get("CERTMINT_HTTP_PORT", cls.http_port)),
                jitter_fraction=float(e.get("CERTMINT_JITTER_FRACTION", cls.jitter_fraction)),
                min_renewal_interval=float(e.get("CERTMINT_MIN_RENEWAL_INTERVAL_SECONDS", cls.min_renewal_interval)),
                trust_propagation_seconds=float(
                    e.get("CERTMINT_TRUST_PROPAGATION_SECONDS", cls.trust_propagation_seconds)
                ),
                rotation_reissue_rate=float(e.get("CERTMINT_ROTATION_REISSUE_RATE", cls.rotation_reissue_rate)),
                issuer_recheck_seconds=float(e.get("CERTMINT_ISSUER_RECHECK_SECONDS", cls.issuer_recheck_seconds)),
                post_events=_bool(e.get("CERTMINT_POST_EVENTS", "true")),
                keygen_processes=int(e.get("CERTMINT_KEYGEN_PROCESSES", cls.keygen_processes)),
                leader_election=_bool(e.get("CERTMINT_LEADER_ELECTION", "true")),
                lease_duration=float(e.get("CERTMINT_LEASE_DURATION_SECONDS", cls.lease_duration)),
                lease_renew=float(e.get("CERTMINT_LEASE_RENEW_SECONDS", cls.lease_renew)),
                lease_retry=float(e.get("CERTMINT_LEASE_RETRY_SECONDS", cls.lease_retry)),
                identity=e.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
                watch_namespaces=tuple(
                    n.strip() for n in e.get("CERTMINT_WATCH_NAMESPACES", "").split(",") if n.strip()
                ),
                pod_certificates=_bool(e.get("CERTMINT_POD_CERTIFICATES", "false")),
            )
        except ValueError as err:
            raise SystemExit(f"certmint: invalid configuration: {err}") from err
        if settings.leader_election and not 0 < settings.lease_renew < settings.lease_duration:
            raise SystemExit("certmint: CERTMINT_LEASE_RENEW_SECONDS must be below CERTMINT_LEASE_DURATION_SECONDS")
        if settings.rotation_reissue_rate <= 0:
            raise SystemExit("certmint: CERTMINT_ROTATION_REISSUE_RATE must be above 0")
        if settings.workers < 1 or not 0 <= settings.jitter_fraction < 0.5:
            raise SystemExit("certmint: CERTMINT_WORKERS must be >= 1 and CERTMINT_JITTER_FRACTION in [0, 0.5)")
        return settings
