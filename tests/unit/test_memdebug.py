"""The memory report on SIGUSR2 is off by default and says what the RSS is made of when on (certmint.memdebug)."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from certmint import memdebug


@pytest.fixture
def restore_sigusr2() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGUSR2)
    yield
    signal.signal(signal.SIGUSR2, previous)


@pytest.mark.usefixtures("restore_sigusr2")
def test_off_unless_switched_on() -> None:
    before = signal.getsignal(signal.SIGUSR2)
    assert memdebug.install({}) is False
    assert memdebug.install({memdebug.ENV: "0"}) is False
    assert signal.getsignal(signal.SIGUSR2) == before


@pytest.mark.usefixtures("restore_sigusr2")
def test_switched_on_it_handles_sigusr2() -> None:
    assert memdebug.install({memdebug.ENV: "1"}) is True
    assert signal.getsignal(signal.SIGUSR2) is memdebug._on_signal


def test_the_report_splits_rss_and_counts_python_objects() -> None:
    text = memdebug.report()
    for field in ("VmRSS:", "RssAnon:", "RssFile:", "Threads:", "allocated blocks:", "gc objects:"):
        assert field in text
