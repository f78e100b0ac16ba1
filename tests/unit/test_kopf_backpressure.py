"""kopf's watcher waits instead of queueing every listed object at once (kopf_adapter.BoundedScheduler)."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from kopf._cogs.aiokits import aiotasks
from kopf._core.reactor import queueing

from certmint.kopf_adapter import BoundedScheduler, install_watch_backpressure


async def _spawn_all(scheduler: aiotasks.Scheduler, gate: asyncio.Event, count: int, spawned: list[int]) -> None:
    for i in range(count):
        await scheduler.spawn(gate.wait(), name=f"worker {i}")
        spawned.append(i)


async def test_spawn_waits_while_limit_workers_run_and_as_many_wait() -> None:
    scheduler = BoundedScheduler(limit=2)
    gate = asyncio.Event()
    spawned: list[int] = []
    feeder = asyncio.create_task(_spawn_all(scheduler, gate, 6, spawned))
    for _ in range(20):  # let the feeder and kopf's spawner run as far as they can
        await asyncio.sleep(0)
    assert spawned == [0, 1, 2, 3]  # two running, two pending: the fifth waits
    assert not feeder.done()
    gate.set()  # the workers finish; each one's end lets the feeder on
    await asyncio.wait_for(feeder, timeout=5)
    assert spawned == [0, 1, 2, 3, 4, 5]
    await asyncio.wait_for(scheduler.wait(), timeout=5)
    await scheduler.close()


async def test_without_a_limit_spawn_never_waits() -> None:
    scheduler = BoundedScheduler()
    gate = asyncio.Event()
    spawned: list[int] = []
    await asyncio.wait_for(_spawn_all(scheduler, gate, 50, spawned), timeout=5)
    assert len(spawned) == 50
    gate.set()
    await scheduler.close()


async def test_closing_releases_a_waiting_spawn() -> None:
    scheduler = BoundedScheduler(limit=1)
    gate = asyncio.Event()
    spawned: list[int] = []
    feeder = asyncio.create_task(_spawn_all(scheduler, gate, 3, spawned))
    for _ in range(20):
        await asyncio.sleep(0)
    assert spawned == [0, 1]
    await scheduler.close()  # kopf's shutdown: the waiting spawn gets kopf's "closed scheduler" error, not a hang
    with pytest.raises(RuntimeError, match="closed"):
        await asyncio.wait_for(feeder, timeout=5)


def test_install_makes_kopfs_watcher_use_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiotasks, "Scheduler", aiotasks.Scheduler)  # restored after the test
    install_watch_backpressure()
    assert aiotasks.Scheduler is BoundedScheduler


def test_the_kopf_internals_this_relies_on() -> None:
    """The watcher builds its scheduler through the module attribute when it starts, with the worker limit; the
    scheduler keeps the fields BoundedScheduler reads. A kopf release that changes either must fail here."""
    source = inspect.getsource(queueing.watcher)
    assert "aiotasks.Scheduler(limit=settings.queueing.worker_limit" in source
    scheduler_init = inspect.getsource(aiotasks.Scheduler.__init__)
    for name in ("_limit", "_closed", "_condition", "_pending_coros", "_running_tasks"):
        assert f"self.{name}" in scheduler_init
    cleaner = inspect.getsource(aiotasks.Scheduler._task_cleaner)
    assert "notify_all()" in cleaner
