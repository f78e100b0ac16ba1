"""Give memory back after a burst of work.

After thousands of issuances (or a restart's listing of every Certificate) the process has freed most of what
the burst allocated, but CPython keeps partly used arenas and glibc keeps freed blocks in its heap: the RSS stays
at the burst's high-water mark. Once the operator has been quiet for 10-20 s, a full garbage collection and
``malloc_trim(0)`` hand the free pages back to the system. Measured at 10,000 Certificates: see docs/performance.md.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import logging
from collections.abc import Callable

log = logging.getLogger("certmint.housekeeping")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where there is no such function (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def release_memory() -> None:
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


async def release_memory_when_quiet(
    activity: Callable[[], int],
    busy: Callable[[], bool],
    interval: float,
    release: Callable[[], None] = release_memory,
    *,
    burst: int = 50,
) -> None:
    """Release memory once per burst: after ``activity()`` moved by ``burst`` or more, then stood still for
    ``interval`` seconds. Smaller moves (an issuer's periodic re-check, one renewal) are not worth a full
    garbage collection."""
    last_seen = activity()
    released_at = last_seen
    while True:
        await asyncio.sleep(interval)  # a periodic check, not a wait for some event
        mark = activity()
        if mark == last_seen and mark - released_at >= burst and not busy():
            release()
            released_at = mark
            log.debug("released free memory after a burst of work")
        last_seen = mark
