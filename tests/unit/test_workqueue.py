"""The work queue: collapsing bursts, one worker per key, re-queue while busy, timers that replace each other."""

from __future__ import annotations

import asyncio
import time

from certmint.controller.workqueue import WorkQueue


async def test_burst_of_adds_collapses_into_one_reconcile() -> None:
    seen: list[str] = []
    done = asyncio.Event()

    async def handler(key: str) -> None:
        seen.append(key)
        done.set()

    q: WorkQueue[str] = WorkQueue(handler, workers=4)
    for _ in range(10):
        q.add("a")
    q.start()
    await asyncio.wait_for(done.wait(), 5)
    await q.stop()
    assert seen == ["a"]


async def test_a_key_is_never_reconciled_concurrently_and_is_requeued_once_if_added_while_busy() -> None:
    running: set[str] = set()
    overlaps: list[str] = []
    calls: list[str] = []
    release = asyncio.Event()
    first_started = asyncio.Event()
    second_done = asyncio.Event()

    async def handler(key: str) -> None:
        if key in running:
            overlaps.append(key)
        running.add(key)
        calls.append(key)
        if len(calls) == 1:
            first_started.set()
            await release.wait()
        else:
            second_done.set()
        running.discard(key)

    q: WorkQueue[str] = WorkQueue(handler, workers=4)
    q.start()
    q.add("k")
    await asyncio.wait_for(first_started.wait(), 5)
    for _ in range(5):
        q.add("k")  # while busy: marks dirty, no concurrent run
    release.set()
    await asyncio.wait_for(second_done.wait(), 5)
    await q.stop()
    assert overlaps == []
    assert calls == ["k", "k"]


async def test_earlier_timer_replaces_a_later_one_and_cancel_drops_it() -> None:
    fired: list[tuple[str, float]] = []
    got = asyncio.Event()

    async def handler(key: str) -> None:
        fired.append((key, time.time()))
        got.set()

    q: WorkQueue[str] = WorkQueue(handler, workers=1)
    q.start()
    now = time.time()
    q.add_at("late", now + 3600)
    q.add_at("late", now + 0.05)  # earlier wins
    q.add_at("late", now + 7200)  # later is ignored while an earlier one is pending
    q.add_at("cancelled", now + 0.01)
    q.cancel_timer("cancelled")
    assert q.due_at("late") == now + 0.05
    await asyncio.wait_for(got.wait(), 5)
    await q.stop()
    assert [k for k, _ in fired] == ["late"]
    assert fired[0][1] >= now + 0.05
    assert q.scheduled == 0


async def test_a_failing_reconcile_does_not_kill_its_worker() -> None:
    calls: list[str] = []
    second = asyncio.Event()

    async def handler(key: str) -> None:
        calls.append(key)
        if key == "bad":
            raise RuntimeError("boom")
        second.set()

    q: WorkQueue[str] = WorkQueue(handler, workers=1)
    q.start()
    q.add("bad")
    q.add("good")
    await asyncio.wait_for(second.wait(), 5)
    assert q.alive
    await q.stop()
    assert calls == ["bad", "good"]


async def test_low_priority_keys_wait_behind_ordinary_ones() -> None:
    order: list[str] = []
    done = asyncio.Event()

    async def handler(key: str) -> None:
        order.append(key)
        if len(order) == 5:
            done.set()

    q: WorkQueue[str] = WorkQueue(handler, workers=1)
    q.add("prune-1", low=True)
    q.add("renew-1")
    q.add("prune-2", low=True)
    q.add("renew-2")
    q.add("renew-3")
    q.start()
    await asyncio.wait_for(done.wait(), 5)
    await q.stop()
    assert order == ["renew-1", "renew-2", "renew-3", "prune-1", "prune-2"]
