"""A keyed work queue with a built-in timer: the operator's one scheduler.

Watch events and timers both just *add a key*; workers reconcile a key from
the latest known state. Guarantees, as in client-go's workqueue:

- a key is processed by at most one worker at a time;
- adding a key that is already waiting is a no-op (bursts collapse);
- adding a key while it is being processed re-queues it once afterwards.

Keys added with ``low=True`` (clean-up such as pruning old CertificateRequests) wait until no
ordinary key is waiting, so that during a burst of renewals the renewals go first.

Timers (renewals, back-off retries, CA re-checks) live in one heap served by
one task — not one task or one poll per object — and each key keeps only its
earliest pending time, so a rescheduled renewal replaces the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)


class WorkQueue(Generic[K]):
    def __init__(
        self, handler: Callable[[K], Awaitable[None]], *, workers: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._handler = handler
        self._workers = workers
        self._clock = clock  # wall clock: timers are absolute times taken from certificates
        self._ready: asyncio.PriorityQueue[tuple[int, int, K]] = asyncio.PriorityQueue()
        self._order = 0  # FIFO within a priority
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._seq = 0
        self._timer_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._failures: dict[K, int] = {}
        self.processed = 0  # reconciles finished, successful or not
        self.max_retry_delay = 60.0
        self.on_timer_fired: Callable[[K, float], None] | None = None

    # -- producers -------------------------------------------------------------------------------------

    def add(self, key: K, *, low: bool = False) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._order += 1
            self._ready.put_nowait((1 if low else 0, self._order, key))

    def add_at(self, key: K, when: float) -> None:
        """Process ``key`` at wall-clock time ``when``; replaces a later pending time for the same key."""
        current = self._due.get(key)
        if current is not None and current <= when:
            return
        self._due[key] = when
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, key))
        self._timer_changed.set()

    def cancel_timer(self, key: K) -> None:
        self._due.pop(key, None)  # the heap entry becomes stale and is skipped

    def due_at(self, key: K) -> float | None:
        return self._due.get(key)

    @property
    def started(self) -> bool:
        return bool(self._tasks)

    @property
    def alive(self) -> bool:
        """True while every worker and the timer task run (the liveness probe)."""
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    @property
    def depth(self) -> int:
        return len(self._queued) + len(self._active)

    @property
    def scheduled(self) -> int:
        return len(self._due)

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(), name=f"certmint-worker-{i}") for i in range(self._workers)]
        self._tasks.append(asyncio.create_task(self._timer_loop(), name="certmint-scheduler"))

    def halt(self) -> None:
        """Stop processing now, without waiting (leadership lost: not one more write)."""
        for t in self._tasks:
            t.cancel()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # -- internals -------------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            _, _, key = await self._ready.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                await self._handler(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # a reconciler bug or an API outage must not kill the worker, nor lose the key
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(0.5 * 2 ** min(failures - 1, 10), self.max_retry_delay)
                log.exception(
                    "reconciling %s failed unexpectedly (attempt %d); retrying in %.1fs", key, failures, delay
                )
                self.add_at(key, self._clock() + delay)
            else:
                self._failures.pop(key, None)
            finally:
                self.processed += 1
                self._active.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)

    async def _timer_loop(self) -> None:
        while True:
            self._timer_changed.clear()
            now = self._clock()
            while self._timers and self._timers[0][0] <= now:
                when, _, key = heapq.heappop(self._timers)
                if self._due.get(key) != when:
                    continue  # superseded or cancelled
                del self._due[key]
                if self.on_timer_fired is not None:
                    self.on_timer_fired(key, now - when)
                self.add(key)
            delay = self._timers[0][0] - now if self._timers else 3600.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_changed.wait(), timeout=max(delay, 0.0))
