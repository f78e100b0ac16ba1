"""Small helpers for tests of every tier: waiting on real conditions."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    what: str,
    timeout: float = 30.0,
    interval: float = 0.1,
    *,
    transient: tuple[type[BaseException], ...] = (Exception,),
    error: Callable[[str], BaseException] = AssertionError,
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned); fail with ``what`` after ``timeout`` seconds.

    Polling the API is how a user (or kubectl wait) observes state; the interval only bounds latency.
    ``transient`` errors from the predicate mean "not yet" (the last one is named in the failure); any other
    error fails at once. The failure is ``error(message)``: an AssertionError for tests, a tier's own error
    where something catches it (the benchmarks).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except transient as e:  # transient API errors while things converge
            last_error = e
        if time.monotonic() > deadline:
            raise error(
                f"timed out after {timeout}s waiting for {what}"
                + (f" (last error: {last_error})" if last_error else "")
            )
        time.sleep(interval)


def timed_wait(predicate: Callable[[], object], what: str, timeout: float, interval: float = 0.1) -> float:
    """:func:`wait_for` with no error taken as "not yet"; returns the seconds it took."""
    start = time.monotonic()
    wait_for(predicate, what, timeout, interval, transient=())
    return time.monotonic() - start
