"""Renewal time and failure back-off: pure maths with an injected clock."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from certmint.core.renewal import renewal_time, retry_delay
from certmint.settings import Settings
from tests.unit.builders import NOW

DAY = timedelta(days=1)
START, END = NOW, NOW + 90 * DAY  # a 90-day certificate


def _at(**kwargs: object) -> object:
    params: dict[str, object] = {
        "renew_before": None,
        "renew_before_percentage": None,
        "jitter_key": "ns/web",
        "max_jitter_fraction": 0.0,
    }
    params.update(kwargs)
    return renewal_time(START, END, **params)  # type: ignore[arg-type]


def test_default_is_one_third_of_the_lifetime_before_expiry() -> None:
    assert _at() == END - 30 * DAY


def test_renew_before_wins() -> None:
    assert _at(renew_before=10 * DAY) == END - 10 * DAY


def test_percentage_is_of_the_lifetime_before_expiry() -> None:
    assert _at(renew_before_percentage=25) == END - timedelta(days=22.5)


def test_renew_before_not_shorter_than_the_lifetime_falls_back_to_one_third() -> None:
    # e.g. a certificate truncated by its CA's expiry to less than renewBefore
    assert _at(renew_before=90 * DAY) == END - 30 * DAY
    assert _at(renew_before=200 * DAY) == END - 30 * DAY


def test_never_earlier_than_a_tenth_into_the_lifetime() -> None:
    one_hour_end = START + timedelta(hours=1)
    moment = renewal_time(
        START, one_hour_end, renew_before=timedelta(minutes=59), renew_before_percentage=None, jitter_key="k"
    )
    assert moment == START + timedelta(minutes=6)
    assert _at(renew_before_percentage=99) == START + 9 * DAY


def test_never_at_or_after_expiry() -> None:
    moment = _at(renew_before=timedelta(0))
    assert moment < END
    assert END - moment == timedelta(microseconds=1)


def test_zero_lifetime_renews_immediately() -> None:
    assert renewal_time(START, START, renew_before=None, renew_before_percentage=None, jitter_key="k") == START


def test_jitter_is_bounded_deterministic_and_spread() -> None:
    base = END - 30 * DAY
    lifetime = END - START
    moments = [
        renewal_time(START, END, renew_before=None, renew_before_percentage=None, jitter_key=f"ns/cert-{i}")
        for i in range(2000)
    ]
    assert all(base - lifetime * 0.1 < m <= base for m in moments)
    again = renewal_time(START, END, renew_before=None, renew_before_percentage=None, jitter_key="ns/cert-7")
    assert again == moments[7]  # stable across calls (and restarts: it is a hash, not a random draw)
    assert len(set(moments)) == 2000
    # Roughly uniform over the jitter window: ten buckets of ~200 each.
    window = lifetime * 0.1
    buckets = Counter(int((base - m) / window * 10) for m in moments)
    assert sorted(buckets) == list(range(10))
    assert all(140 < count < 260 for count in buckets.values()), buckets
    assert max(base - m for m in moments) > window * 0.99


def test_jitter_fraction_is_configurable_and_validated() -> None:
    unjittered = _at()
    wide = _at(max_jitter_fraction=0.2)
    assert unjittered - (END - START) * 0.2 < wide <= unjittered  # type: ignore[operator]
    with pytest.raises(ValueError, match="max_jitter_fraction"):
        _at(max_jitter_fraction=1.5)


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [(0, 1), (1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 32), (7, 60), (8, 60), (50, 60), (10**6, 60)],
)
def test_ten_minute_certificate_retries_within_a_minute(attempts: int, seconds: float) -> None:
    assert retry_delay(timedelta(minutes=10), attempts) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("attempts", "seconds"),
    [(1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (30, 3600), (1000, 3600)],
)
def test_ninety_day_certificate_retries_in_seconds_then_backs_off_to_an_hour(attempts: int, seconds: float) -> None:
    assert retry_delay(90 * DAY, attempts) == timedelta(seconds=seconds)


def test_one_day_certificate_doubles_from_the_first_retry_ceiling_up_to_an_hour() -> None:
    delays = [retry_delay(DAY, n) for n in range(1, 9)]
    assert delays[:5] == [timedelta(seconds=30 * 2**i) for i in range(5)]
    assert delays[-1] == timedelta(hours=1)
    assert delays == sorted(delays)


def test_first_retry_scales_with_short_lifetimes() -> None:
    assert retry_delay(timedelta(hours=5), 1) == timedelta(seconds=18)  # lifetime/1000, under the ceiling


def test_tiny_lifetimes_still_wait_at_least_a_second() -> None:
    assert retry_delay(timedelta(minutes=1), 1) == timedelta(seconds=1)
    assert retry_delay(timedelta(minutes=1), 20) == timedelta(seconds=6)
    assert retry_delay(timedelta(seconds=5), 20) == timedelta(seconds=1)


def test_a_floor_between_two_issuances_of_one_certificate() -> None:
    # duration 1m30s with renewBeforePercentage 99 re-issued every 9 s (7 renewals a minute) before the floor
    end = START + timedelta(seconds=90)

    def at(min_interval: timedelta) -> timedelta:
        moment = renewal_time(
            START,
            end,
            renew_before=None,
            renew_before_percentage=99,
            jitter_key="k",
            max_jitter_fraction=0.1,
            min_interval=min_interval,
        )
        return moment - START

    assert at(timedelta(0)) == timedelta(seconds=9)
    assert at(timedelta(seconds=30)) == timedelta(seconds=30)
    assert at(timedelta(minutes=5)) == timedelta(seconds=45)  # never beyond half the lifetime


def test_the_floor_leaves_ordinary_renewals_alone() -> None:
    assert _at(min_interval=timedelta(seconds=30)) == END - 30 * DAY
    ten_minutes = renewal_time(
        START,
        START + timedelta(minutes=10),
        renew_before=None,
        renew_before_percentage=None,
        jitter_key="k",
        min_interval=timedelta(seconds=30),
    )
    assert timedelta(minutes=5) < ten_minutes - START <= timedelta(minutes=20) / 3


def test_the_default_floor_is_thirty_seconds() -> None:
    assert Settings.from_env({}).min_renewal_interval == 30.0
    assert Settings.from_env({"CERTMINT_MIN_RENEWAL_INTERVAL_SECONDS": "120"}).min_renewal_interval == 120.0
