"""The two lag histograms get what their names say: certmint_renewal_lag_seconds one sample per renewal,
certmint_scheduler_lag_seconds one per timer the work queue fires (renewals, retries, issuer re-checks)."""

from __future__ import annotations

import datetime

from certmint import metrics
from certmint.core.conditions import parse_rfc3339
from tests.controller.conftest import CA_ISSUER
from tests.controller.harness import Harness


def _count(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(f"{name}_count") or 0.0


async def test_a_renewal_is_one_renewal_lag_sample_and_every_timer_a_scheduler_lag_sample(harness: Harness) -> None:
    first = await harness.issued("web", issuer=CA_ISSUER)
    renewals, timers = _count("certmint_renewal_lag_seconds"), _count("certmint_scheduler_lag_seconds")
    renewal = parse_rfc3339(first["renewalTime"])
    await harness.advance_to(renewal - datetime.timedelta(seconds=1))  # issuer re-checks fire on their timers
    assert _count("certmint_renewal_lag_seconds") == renewals, (
        "fired timers were counted as renewals: the work queue's on_timer_fired (controller/runtime.py) must "
        "observe metrics.scheduler_lag (metrics.renewal_lag is certmint_renewal_lag_seconds)"
    )
    before_renewal = _count("certmint_scheduler_lag_seconds")
    assert before_renewal > timers

    await harness.advance(2)
    assert harness.certificate("web")["status"]["revision"] == 2
    assert _count("certmint_renewal_lag_seconds") == renewals + 1
    assert _count("certmint_scheduler_lag_seconds") > before_renewal
