"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Every replica watches and keeps its state warm; only the holder of the Lease
reconciles, so exactly one replica writes. A candidate takes the Lease when
its holder has not renewed it for ``lease_duration``; the holder renews every
``renew_period``, and if it cannot renew before the Lease would expire it
gives up at once (the process exits and is restarted), so two replicas never
act as leader together.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from certmint.kube.client import JSON, ApiError, KubeClient

log = logging.getLogger("certmint.leader")


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_period: float = 5.0
    retry_period: float = 2.0


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


class LeaderElector:
    def __init__(self, api: KubeClient, config: LeaseConfig) -> None:
        self.api = api
        self.config = config
        self.is_leader = False

    @property
    def _path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.config.namespace}/leases"

    async def run(self, on_started_leading: Callable[[], Awaitable[None]], on_lost: Callable[[], None]) -> None:
        """Campaign until elected, call ``on_started_leading``, then renew until the Lease is lost."""
        while True:
            try:
                if await self._try_acquire_or_renew():
                    break
            except (ApiError, OSError) as e:
                log.warning("campaigning for the Lease failed: %s", e)
            await asyncio.sleep(self.config.retry_period)  # the campaign's polling period, as in client-go
        self.is_leader = True
        log.info(
            "became the leader (Lease %s/%s, identity %s)",
            self.config.namespace,
            self.config.name,
            self.config.identity,
        )
        await on_started_leading()
        last_renewal = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.config.renew_period)
            try:
                renewed = await self._try_acquire_or_renew()
            except (ApiError, OSError) as e:
                log.warning("renewing the Lease failed: %s", e)
                renewed = False
            now = asyncio.get_running_loop().time()
            if renewed:
                last_renewal = now
            elif now - last_renewal >= self.config.lease_duration - self.config.retry_period:
                self.is_leader = False
                log.error("lost the Lease %s/%s; stepping down", self.config.namespace, self.config.name)
                on_lost()
                return

    async def release(self) -> None:
        """On a graceful stop, hand the Lease over at once instead of letting it expire."""
        if not self.is_leader:
            return
        self.is_leader = False
        path = f"{self._path}/{self.config.name}"
        lease = await self.api.get(path)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.config.identity:
            return
        patch = {
            "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
            "spec": {"holderIdentity": None, "renewTime": None, "leaseDurationSeconds": 1},
        }
        try:
            await self.api.merge_patch(path, patch)
        except ApiError as e:
            log.warning("releasing the Lease failed (it will expire instead): %s", e)

    async def _try_acquire_or_renew(self) -> bool:
        now = _now()
        cfg = self.config
        lease = await self.api.get(f"{self._path}/{cfg.name}")
        spec_new: JSON = {
            "holderIdentity": cfg.identity,
            "leaseDurationSeconds": int(cfg.lease_duration),
            "renewTime": _micro(now),
        }
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": cfg.name},
                "spec": {**spec_new, "acquireTime": _micro(now), "leaseTransitions": 0},
            }
            try:
                await self.api.create(self._path, body)
            except ApiError as e:
                if e.conflict:
                    return False  # someone else created it first
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = float(spec.get("leaseDurationSeconds") or cfg.lease_duration)
        expired = renewed is None or (now - renewed).total_seconds() > duration
        if holder and holder != cfg.identity and not expired:
            return False
        if holder != cfg.identity:
            spec_new["acquireTime"] = _micro(now)
            spec_new["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        # resourceVersion makes this a compare-and-swap: of two candidates, only one update succeeds.
        patch = {"metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]}, "spec": spec_new}
        try:
            await self.api.merge_patch(f"{self._path}/{cfg.name}", patch)
        except ApiError as e:
            if e.conflict:
                return False
            raise
        return True
