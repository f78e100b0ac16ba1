"""The work queue: collapsing bursts, one worker per key, re-queue while busy, timers that replace each other,
fairness between namespaces, halt and start again, expected failures without tracebacks."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from certmint.controller.workqueue import Pacer, WorkQueue


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


# -- fairness between namespaces ---------------------------------------------------------------------------

Key = tuple[str, str]  # (namespace, name)


def _namespace(key: Key) -> str:
    return key[0]


class Recorder:
    """A handler that records the order of reconciles; ``drain`` waits until ``total`` were made."""

    def __init__(self, total: int) -> None:
        self.order: list[Key] = []
        self.total = total
        self.done = asyncio.Event()

    async def __call__(self, key: Key) -> None:
        self.order.append(key)
        if len(self.order) >= self.total:
            self.done.set()

    async def drain(self, q: WorkQueue[Key]) -> list[Key]:
        q.start()
        await asyncio.wait_for(self.done.wait(), 10)
        await q.stop()
        return self.order


async def test_a_namespace_with_a_backlog_does_not_starve_another() -> None:
    rec = Recorder(1001)
    q: WorkQueue[Key] = WorkQueue(rec, workers=1, group_of=_namespace)
    for i in range(1000):
        q.add(("busy", f"cert-{i}"))
    q.add(("quiet", "renewal"))
    order = await rec.drain(q)
    assert order.index(("quiet", "renewal")) <= 1  # served second, not after the 1,000 keys ahead of it
    assert [k for k in order if k[0] == "busy"] == [("busy", f"cert-{i}") for i in range(1000)]  # FIFO within


async def test_ready_keys_are_served_round_robin_over_namespaces() -> None:
    rec = Recorder(6)
    q: WorkQueue[Key] = WorkQueue(rec, workers=1, group_of=_namespace)
    for key in [("a", "1"), ("a", "2"), ("a", "3"), ("b", "1"), ("b", "2"), ("c", "1")]:
        q.add(key)
    order = await rec.drain(q)
    assert order == [("a", "1"), ("b", "1"), ("c", "1"), ("a", "2"), ("b", "2"), ("a", "3")]


async def test_low_priority_keys_of_any_namespace_wait_behind_every_ordinary_key() -> None:
    rec = Recorder(6)
    q: WorkQueue[Key] = WorkQueue(rec, workers=1, group_of=_namespace)
    q.add(("quiet", "prune"), low=True)
    for i in range(3):
        q.add(("busy", f"renew-{i}"))
    q.add(("busy", "prune"), low=True)
    q.add(("quiet", "renew"))
    order = await rec.drain(q)
    assert order[:4] == [("busy", "renew-0"), ("quiet", "renew"), ("busy", "renew-1"), ("busy", "renew-2")]
    assert set(order[4:]) == {("quiet", "prune"), ("busy", "prune")}


async def test_fair_order_keeps_the_one_worker_per_key_and_collapse_guarantees() -> None:
    running: set[Key] = set()
    overlaps: list[Key] = []
    rec = Recorder(20)

    async def handler(key: Key) -> None:
        if key in running:
            overlaps.append(key)
        running.add(key)
        await asyncio.sleep(0)
        running.discard(key)
        await rec(key)

    q: WorkQueue[Key] = WorkQueue(handler, workers=8, group_of=_namespace)
    for _ in range(5):
        for ns in ("a", "b"):
            for i in range(10):
                q.add((ns, str(i)))  # duplicates collapse while waiting
    calls = await rec.drain(q)
    assert overlaps == []
    assert sorted(calls) == sorted((ns, str(i)) for ns in ("a", "b") for i in range(10))


# -- halt and start again (leadership lost, then won back) -----------------------------------------------------


async def test_halt_then_start_serves_what_was_kept_and_redoes_a_reconcile_cut_short() -> None:
    calls: list[str] = []
    blocked = asyncio.Event()
    finished: list[str] = []
    all_finished = asyncio.Event()

    async def handler(key: str) -> None:
        calls.append(key)
        if key == "slow" and calls.count("slow") == 1:
            blocked.set()
            await asyncio.Event().wait()  # cut short by halt()
        finished.append(key)
        if len(finished) == 3:
            all_finished.set()

    q: WorkQueue[str] = WorkQueue(handler, workers=2)
    q.start()
    q.add("slow")
    await asyncio.wait_for(blocked.wait(), 5)
    q.halt()
    assert not q.started
    await asyncio.sleep(0)  # let the cancellation land
    q.add("added-while-halted")
    q.add_at("timer", time.time() - 1)  # already due: fires only once started again
    for _ in range(5):
        await asyncio.sleep(0)
    assert finished == []  # nothing runs while halted
    q.start()
    await asyncio.wait_for(all_finished.wait(), 5)
    await q.stop()
    assert sorted(finished) == ["added-while-halted", "slow", "timer"]
    assert calls.count("slow") == 2


async def test_start_twice_without_halt_is_refused() -> None:
    async def handler(key: str) -> None:
        return None

    q: WorkQueue[str] = WorkQueue(handler, workers=1)
    q.start()
    with pytest.raises(RuntimeError, match="already started"):
        q.start()
    await q.stop()


# -- expected failures (API server unreachable) ----------------------------------------------------------------


class Unreachable(ConnectionError):
    pass


async def test_expected_errors_are_retried_without_a_traceback_and_at_once_when_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    reachable = False
    failed = asyncio.Event()
    succeeded = asyncio.Event()

    async def handler(key: str) -> None:
        calls.append(key)
        if not reachable:
            failed.set()
            raise Unreachable("connection refused")
        succeeded.set()

    q: WorkQueue[str] = WorkQueue(handler, workers=1, expected=(Unreachable,))
    q.max_retry_delay = 3600.0
    caplog.set_level(logging.DEBUG, logger="certmint.controller.workqueue")
    q.start()
    q.add("k")
    await asyncio.wait_for(failed.wait(), 5)
    due = q.due_at("k")
    assert due is not None and due > time.time()  # retried with back-off
    reachable = True
    q.retry_expected()  # the API server is back: no need to wait for the back-off
    await asyncio.wait_for(succeeded.wait(), 5)
    await q.stop()
    assert calls == ["k", "k"]
    assert q.due_at("k") is None  # the back-off timer was replaced by the immediate retry
    assert all(r.levelno < logging.WARNING and r.exc_info is None for r in caplog.records)


async def test_unexpected_errors_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    done = asyncio.Event()

    async def handler(key: str) -> None:
        done.set()
        raise KeyError("a bug")

    q: WorkQueue[str] = WorkQueue(handler, workers=1, expected=(Unreachable,))
    q.start()
    q.add("k")
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.sleep(0)
    await q.stop()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None


async def test_wake_fires_a_timer_the_moved_clock_made_due_without_waiting_for_it() -> None:
    now = [1000.0]
    fired = asyncio.Event()

    async def handler(key: str) -> None:
        fired.set()

    q: WorkQueue[str] = WorkQueue(handler, workers=1, clock=lambda: now[0])
    q.start()
    q.add_at("renew", 1000.0 + 3600)  # an hour away: the timer task sleeps for an hour of wall-clock time
    await asyncio.sleep(0.05)
    assert not fired.is_set()
    now[0] += 3600
    q.wake()
    await asyncio.wait_for(fired.wait(), 5)  # seconds, not the hour the timer task was sleeping for
    await q.stop()


# -- Pacer: a rotation's re-issues at a set rate ----------------------------------------------------------


def test_pacer_spaces_keys_at_its_rate_and_keeps_each_keys_turn() -> None:
    pacer: Pacer[str] = Pacer(rate=10.0)
    turns = {key: pacer.admit(key, 100.0) for key in "abcd"}
    assert turns["a"] is None  # the first goes at once
    assert turns["b"] == pytest.approx(100.1) and turns["c"] == pytest.approx(100.2)
    assert turns["d"] == pytest.approx(100.3)
    # Asking again early gives the same turn; a newcomer queues behind the others, not in front.
    assert pacer.admit("c", 100.05) == pytest.approx(100.2)
    assert pacer.admit("e", 100.05) == pytest.approx(100.4)
    # At its turn a key goes, even though others asked meanwhile; its turn is used up.
    assert pacer.admit("b", 100.1) is None
    assert "b" not in pacer.reserved


def test_pacer_goes_at_once_when_idle_and_forgets_turns_never_taken() -> None:
    pacer: Pacer[str] = Pacer(rate=2.0)
    assert pacer.admit("a", 0.0) is None
    assert pacer.admit("gone", 0.0) == pytest.approx(0.5)  # its object is deleted: it never comes back
    assert pacer.admit("b", 10.0) is None  # long after: no queue left
    assert pacer.admit("c", 200.0) is None
    assert "gone" not in pacer.reserved


def test_pacer_makes_up_no_missed_turns_in_a_burst() -> None:
    pacer: Pacer[str] = Pacer(rate=10.0)
    turns = [pacer.admit(key, 0.0) for key in "abcde"]
    assert turns[1:] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    # The queue was busy for a second: all four come back late. One goes; the others take new turns, 0.1 s apart.
    late = [pacer.admit(key, 1.0) for key in "bcde"]
    assert late[0] is None
    assert late[1:] == pytest.approx([1.1, 1.2, 1.3])
