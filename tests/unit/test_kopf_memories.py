"""kopf keeps no per-object memory for certmint's objects (kopf_adapter.EventOnlyMemories)."""

from __future__ import annotations

import importlib.metadata
import inspect
from pathlib import Path

import kopf
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory

from certmint.kopf_adapter import EventOnlyMemories


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


def test_the_kopf_internals_we_subclass_are_the_ones_this_adapter_was_written_for() -> None:
    """kopf_adapter overrides a private method: a kopf release that moves or reshapes it must fail here, not in
    production, and the image must run the kopf version this was checked against."""
    parameters = inspect.signature(ResourceMemories.recall).parameters
    assert list(parameters) == ["self", "raw_body", "memobase", "noticed_by_listing", "ephemeral"]
    assert inspect.signature(ResourceMemories.recall).return_annotation in (ResourceMemory, "ResourceMemory")
    lock = Path(__file__).resolve().parents[2] / "operator" / "requirements.lock"
    pinned = [line.split("==")[1].split()[0] for line in lock.read_text().splitlines() if line.startswith("kopf==")]
    assert pinned == [importlib.metadata.version("kopf")], "the image's kopf differs from the one tested here"
