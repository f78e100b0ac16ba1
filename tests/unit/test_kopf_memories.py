"""kopf keeps no per-object memory for certmint's objects (handlers.EventOnlyMemories)."""

from __future__ import annotations

import kopf

from certmint.handlers import EventOnlyMemories


def _body(uid: str) -> kopf.RawBody:
    return {"apiVersion": "certmint.dev/v1alpha1", "kind": "Certificate", "metadata": {"uid": uid, "name": uid}}


async def test_every_event_gets_a_fresh_memory_that_is_not_kept() -> None:
    memories = EventOnlyMemories()
    memo = kopf.Memo(operator="the operator")
    first = await memories.recall(_body("a"), memobase=memo, noticed_by_listing=True)
    again = await memories.recall(_body("a"), memobase=memo)
    for uid in "bcdef":
        await memories.recall(_body(uid), memobase=memo)
    assert again is not first
    assert first.noticed_by_listing and not again.noticed_by_listing
    assert list(memories.iter_all_memories()) == []


async def test_handlers_still_see_the_operators_memo() -> None:
    memo = kopf.Memo(operator="the operator")
    memory = await EventOnlyMemories().recall(_body("a"), memobase=memo)
    assert memory.memo.operator == "the operator"
    assert memory.memo is not memo  # kopf's per-event copy: a handler cannot change what others see
