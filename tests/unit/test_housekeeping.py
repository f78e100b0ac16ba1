"""Memory is released once after each burst of work, only when the operator has gone quiet."""

from __future__ import annotations

import asyncio

from certmint.controller.housekeeping import release_memory, release_memory_when_quiet


async def test_one_release_per_burst_and_none_while_busy() -> None:
    activity = 0
    busy = False
    releases: list[int] = []
    released = asyncio.Event()

    def release() -> None:
        releases.append(activity)
        released.set()

    task = asyncio.create_task(release_memory_when_quiet(lambda: activity, lambda: busy, 0.01, release, burst=5))
    await asyncio.sleep(0)  # the task notes the activity it starts from
    try:
        activity, busy = 10, True  # a burst that is still being worked on
        await asyncio.sleep(0.05)
        assert releases == []
        busy = False
        async with asyncio.timeout(5):
            await released.wait()
        await asyncio.sleep(0.05)  # quiet, nothing new: no second release
        assert releases == [10]

        activity = 12  # too little to be worth it
        await asyncio.sleep(0.05)
        assert releases == [10]

        released.clear()
        activity = 25
        async with asyncio.timeout(5):
            await released.wait()
        assert releases == [10, 25]
    finally:
        task.cancel()


def test_release_memory_runs_here() -> None:
    release_memory()  # glibc's malloc_trim on this machine; must not raise where there is none
