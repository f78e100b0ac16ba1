"""LeaderElector: steps down when it cannot renew in time (even if a renewal hangs), then campaigns again.

The Lease lives in a scripted client; the timings are a few hundred milliseconds so that a term, a loss
and a new term fit in a unit test. The integration tier takes the Lease from a real operator.
"""

from __future__ import annotations

import asyncio
from typing import Any

from certmint.kube.client import ApiUnavailable, KubeClient
from certmint.kube.leader import LeaderElector, LeaseConfig

CONFIG = LeaseConfig(
    namespace="certmint", name="lease", identity="me", lease_duration=0.6, renew_period=0.1, retry_period=0.1
)


class LeaseApi(KubeClient):
    """One Lease in memory; ``mode`` says how the server behaves: "ok", "hang" (blackholed) or "down"."""

    def __init__(self) -> None:
        super().__init__()
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.mode = "ok"

    async def _serve(self) -> None:
        if self.mode == "hang":
            await asyncio.Event().wait()
        if self.mode == "down":
            raise ApiUnavailable("API server unreachable: connection refused")

    async def get(self, path: str) -> dict[str, Any] | None:
        await self._serve()
        return self.lease

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        await self._serve()
        self.version += 1
        self.lease = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}
        return self.lease

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        await self._serve()
        assert self.lease is not None
        self.version += 1
        meta = {**self.lease["metadata"], "resourceVersion": str(self.version)}
        self.lease = {**self.lease, "spec": {**self.lease["spec"], **body["spec"]}, "metadata": meta}
        return self.lease


async def _run_terms(api: LeaseApi, break_lease: str) -> list[str]:
    """Lead, break the server in the way given, mend it, and return what the elector reported."""
    events: list[str] = []
    term = asyncio.Event()
    lost = asyncio.Event()

    async def started() -> None:
        events.append("started")
        term.set()

    def stopped() -> None:
        events.append("stopped")
        lost.set()

    elector = LeaderElector(api, CONFIG)
    task = asyncio.create_task(elector.run(started, stopped))
    try:
        await asyncio.wait_for(term.wait(), 5)
        term.clear()
        api.mode = break_lease
        loop = asyncio.get_running_loop()
        broken_at = loop.time()
        await asyncio.wait_for(lost.wait(), 5)
        # Stepped down before the Lease (renewed at most renew_period before the break) can run out.
        assert loop.time() - broken_at <= CONFIG.lease_duration
        assert not elector.is_leader
        api.mode = "ok"
        await asyncio.wait_for(term.wait(), 5)  # campaigns again and wins: the Lease is ours to take
        assert elector.is_leader and elector.terms == 2
    finally:
        task.cancel()
    return events


async def test_a_renewal_that_hangs_does_not_keep_it_leading_and_it_leads_again_later() -> None:
    assert await _run_terms(LeaseApi(), "hang") == ["started", "stopped", "started"]


async def test_an_unreachable_api_server_makes_it_step_down_and_campaign_again() -> None:
    assert await _run_terms(LeaseApi(), "down") == ["started", "stopped", "started"]


async def test_it_steps_down_at_once_when_another_replica_holds_the_lease() -> None:
    api = LeaseApi()
    started = asyncio.Event()
    lost = asyncio.Event()

    async def on_started() -> None:
        started.set()

    elector = LeaderElector(api, LeaseConfig(**{**CONFIG.__dict__, "lease_duration": 30.0}))
    task = asyncio.create_task(elector.run(on_started, lost.set))
    try:
        await asyncio.wait_for(started.wait(), 5)
        assert api.lease is not None
        api.lease["spec"]["holderIdentity"] = "someone-else"  # renewTime stays fresh: not expired
        await asyncio.wait_for(lost.wait(), 2)  # long before its own 30 s Lease would run out
        assert not elector.is_leader
    finally:
        task.cancel()
