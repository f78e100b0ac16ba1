"""When to renew, and how long to wait after a failure. Pure maths; the clock is always passed in.

Vocabulary, the same in every layer below the controller:

* **renewal time**: the moment a valid certificate is to be renewed. ``renewal_time()`` computes it from the
  certificate's validity and the spec; a value of it is called ``renewal_time`` wherever it is passed on
  (``core.decisions.issuance_reason(renewal_time=...)``, ``renewal_reason``); the Certificate's status shows it as
  ``status.renewalTime`` and the metric ``certmint_certificate_renewal_timestamp_seconds`` exports it.
* **renewal reason**: the ``Reason`` (code ``Renewing``) to issue once ``now`` has reached the renewal time,
  built by ``core.decisions.renewal_reason``; any other Reason is a re-issue, not a renewal.
* **retry delay**: how long to wait after a failed issuance (``retry_delay``); not a renewal time.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Final

#: Never renew before this fraction of the lifetime has passed. A renewBefore
#: (or percentage) so close to the whole lifetime that the next certificate
#: would be due right after issuance must not become a re-issuance loop.
MIN_ELAPSED_FRACTION: Final = 0.1
_RESOLUTION: Final = timedelta(microseconds=1)


def renewal_time(
    not_before: datetime,
    not_after: datetime,
    *,
    renew_before: timedelta | None,
    renew_before_percentage: int | None,
    jitter_key: str,
    max_jitter_fraction: float = 0.1,
    min_interval: timedelta = timedelta(0),
) -> datetime:
    """When the certificate valid from ``not_before`` to ``not_after`` should be renewed.

    1. How long before expiry: ``renew_before``; else ``renew_before_percentage``
       percent of the lifetime (cert-manager's meaning); else a third of the
       lifetime. If that is not shorter than the actual lifetime (e.g. the CA
       truncated the certificate to its own expiry) the one-third rule is used
       instead, as cert-manager does.
    2. Minus a jitter in [0, max_jitter_fraction x lifetime) derived from a hash
       of ``jitter_key``, so thousands issued at once do not all renew in the
       same second. The controller passes "<uid>/<serial>": the jitter of one
       issued certificate is the same after every operator restart (no
       re-scheduling churn), and it is drawn afresh for each new certificate,
       so one Certificate's renewals move by a different amount every time
       (anywhere in the range), rather than keeping one offset for its life.
    3. Clamped into [earliest, not_after), where earliest is not_before plus the larger of
       MIN_ELAPSED_FRACTION x lifetime and ``min_interval`` (at most half the lifetime): a floor under
       the time between two issuances of one certificate, so that a spec like ``duration: 1m30s``
       with ``renewBeforePercentage: 99`` cannot make the operator re-issue every second.
    """
    if not 0 <= max_jitter_fraction < 1:
        raise ValueError(f"max_jitter_fraction must be in [0, 1), got {max_jitter_fraction}")
    lifetime = not_after - not_before
    if lifetime <= timedelta(0):
        return not_before
    before = _renew_before(lifetime, renew_before, renew_before_percentage)
    jitter = lifetime * (max_jitter_fraction * jitter_unit(jitter_key))
    moment = not_after - before - jitter
    earliest = not_before + max(lifetime * MIN_ELAPSED_FRACTION, min(min_interval, lifetime / 2))
    return min(max(moment, earliest), not_after - _RESOLUTION)


def _renew_before(lifetime: timedelta, renew_before: timedelta | None, percentage: int | None) -> timedelta:
    default = lifetime / 3
    if renew_before is not None:
        before = renew_before
    elif percentage is not None:
        before = lifetime * percentage / 100
    else:
        return default
    return before if timedelta(0) <= before < lifetime else default


def jitter_unit(key: str) -> float:
    """A number in [0, 1) that depends only on ``key`` (SHA-256 based, uniform)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


FIRST_RETRY_CEILING = timedelta(seconds=30)


def retry_delay(lifetime: timedelta, failed_attempts: int) -> timedelta:
    """Back-off before retrying a failed issuance, scaled to the certificate's lifetime.

    Starts at max(1s, lifetime/1000) but at most FIRST_RETRY_CEILING (30 s), doubles
    per failed attempt, and is capped at min(1h, lifetime/10), never below 1s. So a
    10-minute certificate retries after 1s, 2s, 4s ... at most 60s (it must not wait
    an hour while it expires); a 90-day certificate retries after 30 s, then backs
    off to an hour within eight attempts — a transient API error costs seconds, a
    persistent failure costs little load. ``failed_attempts`` counts failures so far;
    0 or 1 both give the first delay.
    """
    seconds = lifetime.total_seconds()
    first = min(max(1.0, seconds / 1000), FIRST_RETRY_CEILING.total_seconds())
    cap = max(1.0, min(3600.0, seconds / 10))
    doublings = min(max(failed_attempts - 1, 0), 64)  # 2**64 x 1s is far beyond any cap
    return timedelta(seconds=min(first * 2.0**doublings, cap))
