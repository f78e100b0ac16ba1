"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Every replica watches and keeps its state warm; only the holder of the Lease
reconciles, so exactly one replica writes. A candidate takes the Lease when
its holder has not renewed it for ``lease_duration``; the holder renews every
``renew_period``, and if it cannot renew before the Lease would expire (the API
server is away, or another replica took the Lease) it steps down at once, so two
replicas never act as leader together. Stepping down is not the end: the former
leader stops writing (``on_stopped_leading``), campaigns again like any standby,
and when it wins the Lease back it starts leading again (``on_started_leading``)
from the state its watches kept meanwhile. No process exit, no restart needed.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from certmint.kube.client import JSON, ApiError, ApiUnavailable, KubeClient

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
        self.terms = 0  # times this replica became the leader
        self.holder: str | None = None  # the holder seen at the last read of the Lease

    @property
    def _path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.config.namespace}/leases"

    async def run(
        self, on_started_leading: Callable[[], Awaitable[None]], on_stopped_leading: Callable[[], None]
    ) -> None:
        """Forever (until cancelled): campaign, lead until the Lease is lost, step down, campaign again."""
        while True:
            await self._campaign()
            self.is_leader = True
            self.terms += 1
            log.info(
                "became the leader (Lease %s/%s, identity %s)",
                self.config.namespace,
                self.config.name,
                self.config.identity,
            )
            await on_started_leading()
            await self._hold()
            self.is_leader = False
            log.warning(
                "lost the Lease %s/%s: stepped down (no more writes) and campaigning again",
                self.config.namespace,
                self.config.name,
            )
            on_stopped_leading()

    async def _campaign(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.config.lease_duration):  # a hung request must not end the campaign
                    if await self._try_acquire_or_renew():
                        return
            except TimeoutError:
                log.debug("an attempt to take the Lease did not finish in %.1f s", self.config.lease_duration)
            except (ApiError, OSError) as e:
                self._log_failure("campaigning for the Lease failed: %s", e)
            await asyncio.sleep(self.config.retry_period)  # the campaign's polling period, as in client-go

    async def _hold(self) -> None:
        """Renew until a renewal cannot be had before the Lease would run out; then return."""
        loop = asyncio.get_running_loop()
        cfg = self.config
        deadline = loop.time() + cfg.lease_duration - cfg.retry_period  # step down with a margin
        while True:
            await asyncio.sleep(cfg.renew_period)
            renewed = False
            attempt = loop.time()  # the renewTime written is taken after this: the Lease lasts at least until
            try:
                # A renewal that hangs must not keep us leading past the Lease: bound it by the deadline.
                async with asyncio.timeout(max(deadline - attempt, 0.0)):
                    renewed = await self._try_acquire_or_renew()
            except TimeoutError:
                log.debug("renewing the Lease did not finish before it would run out")
            except (ApiError, OSError) as e:
                self._log_failure("renewing the Lease failed: %s", e)
            if renewed:
                deadline = attempt + cfg.lease_duration - cfg.retry_period
            elif self.holder not in (None, cfg.identity) or loop.time() >= deadline:
                return  # another replica holds the Lease now, or ours is about to run out

    @staticmethod
    def _log_failure(message: str, error: Exception) -> None:
        # An unavailable API server is reported once per outage by the client; only other failures are news.
        log.log(logging.DEBUG if isinstance(error, ApiUnavailable) else logging.WARNING, message, error)

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
        self.holder = None
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
        self.holder = holder
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
