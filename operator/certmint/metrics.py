"""Prometheus metrics. Names follow the Prometheus conventions (units in the name, _total for counters)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

certificate_expiration = Gauge(
    "certmint_certificate_expiration_timestamp_seconds",
    "notAfter of the certificate currently in the Certificate's Secret (Unix time).",
    ["namespace", "name", "issuer_name", "issuer_kind"],
    registry=REGISTRY,
)
certificate_renewal = Gauge(
    "certmint_certificate_renewal_timestamp_seconds",
    "When the operator will renew the certificate (Unix time).",
    ["namespace", "name", "issuer_name", "issuer_kind"],
    registry=REGISTRY,
)
certificate_ready = Gauge(
    "certmint_certificate_ready_status",
    "1 while the Certificate's Ready condition is True, else 0 (one series per certificate: memory grows with them).",
    ["namespace", "name"],
    registry=REGISTRY,
)
issuances = Counter(
    "certmint_issuances_total",
    "Certificates signed, by issuer kind and trigger (Issued: first or re-issue, Renewed: renewal time).",
    ["issuer_kind", "trigger"],
    registry=REGISTRY,
)
issuance_seconds = Histogram(
    "certmint_issuance_duration_seconds",
    "Time from deciding to issue to the Secret and status being written.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
errors = Counter(
    "certmint_errors_total",
    "Failures seen while reconciling, by resource kind and reason.",
    ["kind", "reason"],
    registry=REGISTRY,
)
api_requests = Counter(
    "certmint_api_requests_total",
    "Requests the reconcilers sent to the Kubernetes API (kopf's own watches excluded), by verb and resource.",
    ["verb", "resource"],
    registry=REGISTRY,
)
renewal_lag = Histogram(
    "certmint_scheduler_lag_seconds",
    "How late the scheduler fired a timer (renewal, retry) compared with its due time.",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
    registry=REGISTRY,
)
renewal_start_lag = Histogram(
    "certmint_renewal_lag_seconds",
    "How late a renewal started compared with its scheduled renewal time.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
    registry=REGISTRY,
)
queue_depth = Gauge("certmint_workqueue_depth", "Keys waiting or being reconciled.", registry=REGISTRY)
scheduled_timers = Gauge("certmint_scheduled_timers", "Keys with a pending timer.", registry=REGISTRY)


def set_ready(namespace: str, name: str, status: str) -> None:
    certificate_ready.labels(namespace, name).set(1.0 if status == "True" else 0.0)


def forget_certificate(namespace: str, name: str, issuer_name: str, issuer_kind: str) -> None:
    for gauge, labels in (
        (certificate_expiration, (namespace, name, issuer_name, issuer_kind)),
        (certificate_renewal, (namespace, name, issuer_name, issuer_kind)),
        (certificate_ready, (namespace, name)),
    ):
        with contextlib.suppress(KeyError):
            gauge.remove(*labels)


leader = Gauge("certmint_leader", "1 while this replica holds the leader Lease and reconciles.", registry=REGISTRY)
