"""A keyed work queue with a built-in timer: the operator's one scheduler.

Watch events and timers both just *add a key*; workers reconcile a key from
the latest known state. Guarantees, as in client-go's workqueue:

- a key is processed by at most one worker at a time;
- adding a key that is already waiting is a no-op (bursts collapse);
- adding a key while it is being processed re-queues it once afterwards.

Order: fair between groups, first in first out within a group. A key's group comes from
``group_of`` (the operator groups by namespace), and ready keys are served round-robin over the
groups that have keys waiting: with 1,000 keys of namespace A queued before one key of
namespace B, B's key is the second one served, not the 1,001st. So one tenant with many busy
Certificates delays another tenant's renewal by at most one reconcile per busy namespace, never
by its whole backlog. Adding and taking a key cost O(1) whatever the number of keys or groups.

Keys added with ``low=True`` (clean-up such as pruning old CertificateRequests) wait until no
ordinary key is waiting, so that during a burst of renewals the renewals go first; among
themselves they are served as fairly as ordinary keys.

Timers (renewals, back-off retries, CA re-checks) live in one heap served by
one task — not one task or one poll per object — and each key keeps only its
earliest pending time, so a rescheduled renewal replaces the old one.

Failures: a reconcile that raises is retried with exponential back-off per key. Exceptions of the
``expected`` kinds (the API server unreachable) are someone else's to report, once per outage:
here they are logged at DEBUG, without a traceback, and the key is retried; ``retry_expected()``
retries every such key at once (the API server is back). Anything else is a bug and is logged
with its traceback.

``halt()`` stops the workers and the timer at once (the Lease was lost); keys, timers and keys
whose reconcile was cut short stay queued, and ``start()`` serves them again (the Lease is back).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)


def _one_group(key: Hashable) -> Hashable:
    return None


class FairFifo(Generic[K]):
    """FIFO within a group, round-robin between the groups that have keys: O(1) ``push`` and ``pop``."""

    def __init__(self, group_of: Callable[[K], Hashable] = _one_group) -> None:
        self._group_of = group_of
        self._groups: dict[Hashable, collections.deque[K]] = {}
        self._turns: collections.deque[Hashable] = collections.deque()  # groups with keys, next turn first
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, key: K) -> None:
        group = self._group_of(key)
        keys = self._groups.get(group)
        if keys is None:
            keys = self._groups[group] = collections.deque()
            self._turns.append(group)
        keys.append(key)
        self._size += 1

    def pop(self) -> K:
        group = self._turns.popleft()
        keys = self._groups[group]
        key = keys.popleft()
        if keys:
            self._turns.append(group)  # back of the line: every other waiting group goes first
        else:
            del self._groups[group]
        self._size -= 1
        return key


class WorkQueue(Generic[K]):
    def __init__(
        self,
        handler: Callable[[K], Awaitable[None]],
        *,
        workers: int,
        clock: Callable[[], float] = time.time,
        group_of: Callable[[K], Hashable] = _one_group,
        expected: tuple[type[Exception], ...] = (),
    ) -> None:
        self._handler = handler
        self._workers = workers
        self._clock = clock  # wall clock: timers are absolute times taken from certificates
        self._ready: FairFifo[K] = FairFifo(group_of)
        self._low: FairFifo[K] = FairFifo(group_of)
        self._waiting = asyncio.Semaphore(0)  # one unit per key in _ready or _low
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._seq = 0
        self._timer_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._halted: list[asyncio.Task[None]] = []
        self._failures: dict[K, int] = {}
        self._expected = expected
        self._retry_at: dict[K, float] = {}  # keys that failed on an expected error, and their retry time
        self.processed = 0  # reconciles finished, successful or not
        self.max_retry_delay = 60.0
        self.on_timer_fired: Callable[[K, float], None] | None = None

    # -- producers -------------------------------------------------------------------------------------

    def add(self, key: K, *, low: bool = False) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            (self._low if low else self._ready).push(key)
            self._waiting.release()

    def add_at(self, key: K, when: float) -> None:
        """Process ``key`` at wall-clock time ``when``; replaces a later pending time for the same key."""
        current = self._due.get(key)
        if current is not None and current <= when:
            return
        self._due[key] = when
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, key))
        self._timer_changed.set()

    def wake(self) -> None:
        """Look at the timers now: the clock moved by more than the timer task's sleep knows of (a fake clock in
        tests, a resumed machine)."""
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
        """Start the workers and the timer; also after ``halt()``, to serve what was kept meanwhile."""
        if self._tasks:
            raise RuntimeError("the work queue is already started")
        self._tasks = [asyncio.create_task(self._worker(), name=f"certmint-worker-{i}") for i in range(self._workers)]
        self._tasks.append(asyncio.create_task(self._timer_loop(), name="certmint-scheduler"))

    def halt(self) -> None:
        """Stop processing now, without waiting (leadership lost: not one more write).

        Every worker is cancelled at the point where it waits; a key cut short is queued again, so
        ``start()`` reconciles it from the state known then.
        """
        for t in self._tasks:
            t.cancel()
        self._halted += self._tasks
        self._tasks = []

    async def stop(self) -> None:
        self.halt()
        await asyncio.gather(*self._halted, return_exceptions=True)
        self._halted = []

    def retry_expected(self) -> None:
        """Retry now every key whose last reconcile failed on an expected error (the API server is back)."""
        for key, when in self._retry_at.items():
            if self._due.get(key) == when:
                self.cancel_timer(key)
            self.add(key)
        self._retry_at.clear()

    # -- internals -------------------------------------------------------------------------------------

    def _take(self) -> K:
        return self._ready.pop() if self._ready else self._low.pop()

    async def _worker(self) -> None:
        while True:
            await self._waiting.acquire()
            key = self._take()
            self._queued.discard(key)
            self._active.add(key)
            requeue = False
            try:
                await self._handler(key)
            except asyncio.CancelledError:
                requeue = True  # halted mid-reconcile: do it again when started again
                raise
            except self._expected as e:
                self._retry(key, f"{type(e).__name__}: {e}", expected=True)
            except Exception:  # a reconciler bug must not kill the worker, nor lose the key
                self._retry(key, "", expected=False)
            else:
                self._failures.pop(key, None)
                self._retry_at.pop(key, None)
            finally:
                self.processed += 1
                self._active.discard(key)
                if requeue or key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)

    def _retry(self, key: K, error: str, *, expected: bool) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = min(0.5 * 2 ** min(failures - 1, 10), self.max_retry_delay)
        when = self._clock() + delay
        if expected:
            log.debug("reconciling %s failed (%s); retrying in %.1fs", key, error, delay)
            self._retry_at[key] = when
        else:
            log.exception("reconciling %s failed unexpectedly (attempt %d); retrying in %.1fs", key, failures, delay)
            self._retry_at.pop(key, None)
        self.add_at(key, when)

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


class Pacer(Generic[K]):
    """Spaces out work that may wait (a rotation's re-issues) to ``rate`` per second, without holding a worker.

    ``admit(key, now)`` says go (None) or when to come back: that time is reserved for ``key``, so coming back
    then goes at once instead of queueing behind keys that asked meanwhile. A key that comes back later than
    its turn (the queue was busy) takes a new one: turns that passed unused are not made up in a burst. What
    never comes back (a deleted object) is forgotten a minute after its time.
    """

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_free = 0.0
        self.reserved: dict[K, float] = {}
        self._pruned = 0.0

    def admit(self, key: K, now: float) -> float | None:
        slot = self.reserved.pop(key, None)
        if slot is not None:
            if now < slot - 0.001:
                self.reserved[key] = slot
                return slot
            if now <= slot + self.interval:
                return None
        if now > self._pruned + 60:
            self._pruned = now
            for stale in [k for k, t in self.reserved.items() if t < now - 60]:
                del self.reserved[stale]
        slot = max(now, self.next_free)
        self.next_free = slot + self.interval
        if slot <= now:
            return None
        self.reserved[key] = slot
        return slot
