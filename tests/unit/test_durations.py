"""Go-style duration parsing and formatting."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certmint.core.spec import SpecError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2160h", timedelta(days=90)),
        ("1.5h", timedelta(minutes=90)),
        ("500ms", timedelta(milliseconds=500)),
        ("1h1m1s1ms1us", timedelta(hours=1, minutes=1, seconds=1, milliseconds=1, microseconds=1)),
        ("250\u00b5s", timedelta(microseconds=250)),
        ("250\u03bcs", timedelta(microseconds=250)),
        ("1500ns", timedelta(microseconds=1)),  # below a microsecond is truncated
        (".5s", timedelta(milliseconds=500)),
        ("0", timedelta(0)),
        ("+5m", timedelta(minutes=5)),
        ("1m30m", timedelta(minutes=31)),  # Go sums repeated units too
    ],
)
def test_parse_duration_accepts_go_syntax(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10x", "h", "1", "1.2.3h", "1h 30m", "-1h", "1d", "abc", "1hh"])
def test_parse_duration_rejects_other_text_naming_the_field(text: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_duration(text, field="spec.duration")
    assert str(caught.value).startswith("spec.duration: ")
    assert caught.value.field == "spec.duration"


def test_parse_duration_error_message_is_actionable() -> None:
    with pytest.raises(SpecError, match=r'spec\.duration: .10x. is not a duration like "1h30m"'):
        parse_duration("10x", field="spec.duration")


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(days=90), "2160h"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(seconds=1, milliseconds=500), "1.5s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(microseconds=1500), "1.5ms"),
        (timedelta(microseconds=7), "7us"),
        (timedelta(hours=1, seconds=5), "1h5s"),
    ],
)
def test_format_duration_is_compact(duration: timedelta, text: str) -> None:
    assert format_duration(duration) == text


@pytest.mark.parametrize(
    "duration",
    [
        timedelta(microseconds=n)
        for n in (
            1,
            999,
            1_000,
            123_456,
            1_000_000,
            59_999_999,
            3_600_000_001,
            7_776_000_000_000,
            86_399_123_456,
        )
    ],
)
def test_format_then_parse_round_trips(duration: timedelta) -> None:
    assert parse_duration(format_duration(duration)) == duration


@pytest.mark.parametrize("text", ["1h30m", "2160h", "10m", "1.5s", "500ms", "45s"])
def test_parse_then_format_is_stable(text: str) -> None:
    once = format_duration(parse_duration(text))
    assert format_duration(parse_duration(once)) == once
    assert parse_duration(once) == parse_duration(text)
