"""The only place certmint reaches into kopf beyond its public API, and why it is worth it.

kopf keeps, for every object it has seen, a per-object memory (progress of change handlers, daemons,
indexes, error back-off, a copy of the memo) and builds a diff base for every event by deep-copying
the object. certmint registers only event handlers and keeps what it needs itself
(controller.state), so both cost memory and CPU for nothing: over 1 KB per object, 10 MB and more at
10,000 certificates, and about 5% of the CPU of a burst of issuances.

kopf also reads a watch stream as fast as the API server sends it, however far its per-object workers
lag behind: a restart's listing of 10,000 Certificates became 10,000 raw objects queued in memory at
once (a 221 MiB peak, and 188 MiB kept after it, on a machine whose API server lists faster than the
operator handles; see ``BoundedScheduler``).

``NoDiffBase`` uses kopf's public ``DiffBaseStorage``. ``EventOnlyMemories`` subclasses
``kopf._core.reactor.inventory.ResourceMemories`` and ``BoundedScheduler`` subclasses
``kopf._cogs.aiokits.aiotasks.Scheduler``, neither of which is public: kopf is pinned to one exact
version in the image (operator/requirements.lock), and tests/unit/test_kopf_memories.py and
tests/unit/test_kopf_backpressure.py fail when the internals this relies on change.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable
from typing import Any

import kopf
from kopf._cogs.aiokits import aiotasks
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: certmint registers only event handlers, which never read one.

    kopf's default builds the diff base of every event by deep-copying the whole object (status and
    managedFields included), about 5% of the operator's CPU during a burst of issuances.
    """

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class EventOnlyMemories(ResourceMemories):
    """kopf's per-object memory, never kept: a fresh one for each event, forgotten after it.

    kopf remembers, for every object it has seen, a record for the state of change handlers
    (progress, "handled once"), daemons, indexes, error back-off and a copy of the memo — over
    1 KB per object, for features certmint does not use: it
    registers only event handlers, which keep no progress, and keeps what it needs itself
    (controller.state). What is lost per object is kopf's back-off after errors in its own
    processing of an event (not in handlers); with no patches of ours for kopf to apply there is
    little left to fail.
    """

    async def recall(
        self,
        raw_body: kopf.RawBody,
        *,
        memobase: Any = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> ResourceMemory:
        memory: ResourceMemory = await super().recall(
            raw_body, memobase=memobase, noticed_by_listing=noticed_by_listing, ephemeral=True
        )
        return memory


class BoundedScheduler(aiotasks.Scheduler):
    """kopf's scheduler of per-object workers, whose ``spawn()`` waits while too many objects are in hand.

    kopf's watcher hands each new object's first event to ``spawn()`` and reads on at once: past the worker
    limit the objects queue without bound. At a restart the listing of every Certificate arrives faster
    than certmint records them (more so where the API server is fast), so every listed object was held at
    once, and what certmint kept was scattered over the arenas the backlog had filled: CPython can give an
    arena back only when all of it is free. Here the watcher waits while ``limit`` workers run and as many
    objects again wait for one; it stops reading the stream (the API server's connection holds the rest),
    and the listing is held at most a page and a few hundred objects at a time.

    Without a limit (kopf's posting and daemon schedulers) nothing changes.
    """

    async def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> None:
        limit = self._limit
        if limit is not None and not self._closed:
            # Every finished worker notifies the condition after leaving the running set (kopf's cleaner), so a
            # count of running plus pending tasks that drops below the bound always wakes this wait.
            async with self._condition:
                await self._condition.wait_for(
                    lambda: self._closed or len(self._running_tasks) + self._pending_coros.qsize() < 2 * limit
                )
        await super().spawn(coro, name=name)


def install_watch_backpressure() -> None:
    """Make kopf's watchers spawn their per-object workers through ``BoundedScheduler`` (kopf's queueing looks
    ``aiotasks.Scheduler`` up when a watcher starts). Call before ``kopf.run``."""
    aiotasks.Scheduler = BoundedScheduler  # type: ignore[misc]
