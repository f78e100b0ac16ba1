"""The per-certificate series come from one table; they must scrape like ordinary gauges and go away with it."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import aiohttp
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily

from certmint import metrics
from certmint.http import start_http_server


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


async def test_a_scrape_for_named_metrics_leaves_the_per_certificate_series_uncollected() -> None:
    """``/metrics?name[]=...`` (as prometheus_client's own handler): a poll of a few gauges does not pay for three
    series per Certificate."""
    metrics.certificates.set_times("ns-m", "named", "ca", "ClusterIssuer", expiration=2000.0, renewal=1500.0)
    collected = 0
    original = metrics.certificates.collect

    def counting_collect() -> Iterator[GaugeMetricFamily]:
        nonlocal collected
        collected += 1
        return original()

    runner = await start_http_server(0, is_alive=lambda: True, is_ready=lambda: True)
    try:
        port = runner.addresses[0][1]
        with mock.patch.object(metrics.certificates, "collect", counting_collect):
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{port}/metrics"
                async with session.get(url, params=[("name[]", "certmint_leader")]) as resp:
                    some = await resp.text()
                assert collected == 0
                async with session.get(url) as resp:
                    everything = await resp.text()
                assert collected == 1
    finally:
        await runner.cleanup()
        metrics.forget_certificate("ns-m", "named")
    assert "certmint_leader " in some and "certmint_workqueue_depth" not in some and 'name="named"' not in some
    assert "certmint_leader " in everything and 'name="named",namespace="ns-m"' in everything
