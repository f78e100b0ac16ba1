"""The only place certmint reaches into kopf beyond its public API, and why it is worth it.

kopf keeps, for every object it has seen, a per-object memory (progress of change handlers, daemons,
indexes, error back-off, a copy of the memo) and builds a diff base for every event by deep-copying
the object. certmint registers only event handlers and keeps what it needs itself
(controller.state), so both cost memory and CPU for nothing: over 1 KB per object, 10 MB and more at
10,000 certificates, and about 5% of the CPU of a burst of issuances.

``NoDiffBase`` uses kopf's public ``DiffBaseStorage``. ``EventOnlyMemories`` subclasses
``kopf._core.reactor.inventory.ResourceMemories``, which is not public: kopf is pinned to one exact
version in the image (operator/requirements.lock), and tests/unit/test_kopf_memories.py fails when
the internals this relies on change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf
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
