"""The per-certificate series come from one table; they must scrape like ordinary gauges and go away with it."""

from __future__ import annotations

from prometheus_client import generate_latest

from certmint import metrics


def _scrape() -> str:
    return generate_latest(metrics.REGISTRY).decode()


def test_series_appear_change_and_disappear() -> None:
    metrics.certificates.set_times("ns-m", "web", "ca", "ClusterIssuer", expiration=2000.0, renewal=1500.0)
    metrics.set_ready("ns-m", "web", "True")
    text = _scrape()
    labels = 'issuer_kind="ClusterIssuer",issuer_name="ca",name="web",namespace="ns-m"'  # sorted, as exposed
    assert f"certmint_certificate_expiration_timestamp_seconds{{{labels}}} 2000.0" in text
    assert f"certmint_certificate_renewal_timestamp_seconds{{{labels}}} 1500.0" in text
    assert 'certmint_certificate_ready_status{name="web",namespace="ns-m"} 1.0' in text

    # A new issuer replaces the series instead of leaving the old one behind.
    metrics.certificates.set_times("ns-m", "web", "other", "Issuer", expiration=3000.0, renewal=2500.0)
    metrics.set_ready("ns-m", "web", "False")
    text = _scrape()
    assert 'issuer_name="ca"' not in text
    assert (
        'expiration_timestamp_seconds{issuer_kind="Issuer",issuer_name="other",name="web",namespace="ns-m"} 3000.0'
        in text
    )
    assert 'certmint_certificate_ready_status{name="web",namespace="ns-m"} 0.0' in text

    metrics.forget_certificate("ns-m", "web")
    assert 'name="web",namespace="ns-m"' not in _scrape()  # other tiers in this process may have a "web"


def test_ready_without_times_exports_only_readiness() -> None:
    metrics.set_ready("ns-m", "broken", "False")
    text = _scrape()
    assert 'certmint_certificate_ready_status{name="broken",namespace="ns-m"} 0.0' in text
    assert 'name="broken",namespace="ns-m"} 0.0' in text
    assert 'timestamp_seconds{issuer_kind="",issuer_name="",name="broken"' not in text
    metrics.forget_certificate("ns-m", "broken")


def test_each_lag_histogram_is_named_in_python_as_it_is_exported() -> None:
    assert metrics.scheduler_lag.describe()[0].name == "certmint_scheduler_lag_seconds"
    assert metrics.renewal_lag.describe()[0].name == "certmint_renewal_lag_seconds"
    assert metrics.renewal_start_lag is metrics.renewal_lag
