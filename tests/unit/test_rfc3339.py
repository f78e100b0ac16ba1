"""Timestamps: written with rfc3339, read back with parse_rfc3339 (one pair, in certmint.pki.timestamps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from certmint.core import conditions
from certmint.pki.timestamps import parse_rfc3339, rfc3339


def test_round_trip_at_whole_seconds() -> None:
    moment = datetime(2027, 2, 24, 23, 18, 9, tzinfo=UTC)
    assert rfc3339(moment) == "2027-02-24T23:18:09Z"
    assert parse_rfc3339(rfc3339(moment)) == moment


def test_offsets_are_honoured_and_a_missing_zone_is_refused() -> None:
    assert parse_rfc3339("2027-02-25T01:18:09+02:00") == datetime(2027, 2, 24, 23, 18, 9, tzinfo=UTC)
    assert parse_rfc3339("2027-02-25T01:18:09+02:00").utcoffset() == timezone(timedelta(hours=2)).utcoffset(None)
    with pytest.raises(ValueError, match="no time zone"):
        parse_rfc3339("2027-02-24T23:18:09")
    with pytest.raises(ValueError):
        parse_rfc3339("yesterday")


def test_a_moment_with_an_offset_is_written_in_utc() -> None:
    assert (
        rfc3339(datetime(2027, 2, 25, 1, 18, 9, 750000, tzinfo=timezone(timedelta(hours=2)))) == "2027-02-24T23:18:09Z"
    )


def test_status_writers_get_the_same_functions_from_core() -> None:
    assert conditions.rfc3339 is rfc3339
    assert conditions.parse_rfc3339 is parse_rfc3339
