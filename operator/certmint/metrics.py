"""Prometheus metrics. Names follow the Prometheus conventions (units in the name, _total for counters).

The per-certificate series (expiry, renewal time, readiness) are not prometheus_client Gauges: a labelled
Gauge child costs about 700 bytes (an object, a lock, a value holder), three per certificate, 21 MB at
10,000 certificates. They live in one table of tuples instead and become samples at scrape time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)


class _Series(NamedTuple):
    issuer_name: str
    issuer_kind: str
    expiration: float | None
    renewal: float | None
    ready: float | None


class CertificateSeries(Collector):
    """certmint_certificate_{expiration,renewal}_timestamp_seconds and certmint_certificate_ready_status."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _Series] = {}

    def set_times(
        self, namespace: str, name: str, issuer_name: str, issuer_kind: str, *, expiration: float, renewal: float
    ) -> None:
        old = self._series.get((namespace, name))
        ready = old.ready if old else None
        self._series[(namespace, name)] = _Series(issuer_name, issuer_kind, expiration, renewal, ready)

    def set_ready(self, namespace: str, name: str, ready: bool) -> None:
        old = self._series.get((namespace, name))
        value = 1.0 if ready else 0.0
        if old is None:
            self._series[(namespace, name)] = _Series("", "", None, None, value)
        elif old.ready != value:
            self._series[(namespace, name)] = old._replace(ready=value)

    def forget(self, namespace: str, name: str) -> None:
        self._series.pop((namespace, name), None)

    def _families(self, series: Iterable[tuple[tuple[str, str], _Series]]) -> Iterator[GaugeMetricFamily]:
        labels = ["namespace", "name", "issuer_name", "issuer_kind"]
        expiration = GaugeMetricFamily(
            "certmint_certificate_expiration_timestamp_seconds",
            "notAfter of the certificate currently in the Certificate's Secret (Unix time).",
            labels=labels,
        )
        renewal = GaugeMetricFamily(
            "certmint_certificate_renewal_timestamp_seconds",
            "When the operator will renew the certificate (Unix time).",
            labels=labels,
        )
        ready = GaugeMetricFamily(
            "certmint_certificate_ready_status",
            "1 while the Certificate's Ready condition is True, else 0.",
            labels=["namespace", "name"],
        )
        for (namespace, name), s in series:
            if s.expiration is not None and s.renewal is not None:
                values = [namespace, name, s.issuer_name, s.issuer_kind]
                expiration.add_metric(values, s.expiration)
                renewal.add_metric(values, s.renewal)
            if s.ready is not None:
                ready.add_metric([namespace, name], s.ready)
        yield expiration
        yield renewal
        yield ready

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families' names without their samples: a scrape that asks for other names (``name[]``) skips
        collecting 3 series per Certificate."""
        return self._families(())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self._families(list(self._series.items()))


certificates = CertificateSeries()
REGISTRY.register(certificates)

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
scheduler_lag = Histogram(
    "certmint_scheduler_lag_seconds",
    "How late the scheduler fired a timer (renewal, retry) compared with its due time.",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
    registry=REGISTRY,
)
renewal_lag = Histogram(
    "certmint_renewal_lag_seconds",
    "How late a renewal started compared with its scheduled renewal time.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
    registry=REGISTRY,
)
#: The former Python name of ``renewal_lag``, until every caller uses that.
renewal_start_lag = renewal_lag
memory_releases = Counter(
    "certmint_memory_releases_total",
    "Times the operator handed freed memory back to the system after a burst of work had settled.",
    registry=REGISTRY,
)
queue_depth = Gauge("certmint_workqueue_depth", "Keys waiting or being reconciled.", registry=REGISTRY)
scheduled_timers = Gauge("certmint_scheduled_timers", "Keys with a pending timer.", registry=REGISTRY)


root_rotation = Gauge(
    "certmint_root_rotation_next_step_timestamp_seconds",
    "A root CA Certificate in rotation: when its next step happens (step: switch, then retire; Unix time).",
    ["namespace", "name", "step"],
    registry=REGISTRY,
)


def set_rotation_step(namespace: str, name: str, step: str | None, when: float = 0.0) -> None:
    """The root's rotation step to come (None: none in progress)."""
    for other in ("switch", "retire"):
        if other != step:
            with contextlib.suppress(KeyError):  # no such series
                root_rotation.remove(namespace, name, other)
    if step is not None:
        root_rotation.labels(namespace, name, step).set(when)


issuer_rotation = Gauge(
    "certmint_issuer_root_rotation_next_step_timestamp_seconds",
    "An issuer whose CA Secret was given a CA under a new root: when its next step happens (step: switch, then "
    "retire; Unix time).",
    ["kind", "namespace", "name", "step"],
    registry=REGISTRY,
)


def set_issuer_rotation_step(kind: str, namespace: str, name: str, step: str | None, when: float = 0.0) -> None:
    """The replaced root's step to come for an issuer (None: none in progress)."""
    for other in ("switch", "retire"):
        if other != step:
            with contextlib.suppress(KeyError):  # no such series
                issuer_rotation.remove(kind, namespace, name, other)
    if step is not None:
        issuer_rotation.labels(kind, namespace, name, step).set(when)


def set_ready(namespace: str, name: str, status: str) -> None:
    certificates.set_ready(namespace, name, status == "True")


def forget_certificate(namespace: str, name: str) -> None:
    certificates.forget(namespace, name)


leader = Gauge("certmint_leader", "1 while this replica holds the leader Lease and reconciles.", registry=REGISTRY)
