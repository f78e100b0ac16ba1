"""List, then watch, one resource through a server-side label selector, keeping nothing of what it sees.

kopf keeps a memory record for every object it watches (about 1 KB each) and runs its whole event
machinery per event. For the operator's Secrets — one per Certificate — only the name, labels and
resourceVersion matter between reconciles, so they are watched here instead (``metadata_only``: the
server sends only the metadata, not the data): a paginated list, then a watch from the list's
resourceVersion with bookmarks; a relist when the server answers 410 Gone (the version fell out of its
window); back-off on any other failure. An unavailable API server is reported once per outage by the
client (ApiHealth), so here it is logged at DEBUG only. Every object goes to ``on_event`` and is
dropped. After each (re)list ``on_listed`` receives the keys present, so that a deletion missed while
disconnected is still noticed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from certmint.kube.client import JSON, METADATA_LIST, METADATA_OBJECT, ApiError, ApiUnavailable, KubeClient

log = logging.getLogger("certmint.watch")

Key = tuple[str, str]  # (namespace, name)
T = TypeVar("T")

#: What a watch, or a read it starts with, retries: the API server's errors, an outage, a broken connection.
RETRIED = (ApiError, ApiUnavailable, aiohttp.ClientError, TimeoutError, ValueError)


class Gone(Exception):
    """The resourceVersion to resume from is too old: list again."""


@dataclass
class ListWatch:
    api: KubeClient
    path: str  # the collection, e.g. /api/v1/secrets or /api/v1/namespaces/x/secrets
    label_selector: str
    on_event: Callable[[str, JSON], None]
    on_listed: Callable[[set[Key]], None]
    page_size: int = 500
    metadata_only: bool = False  # objects as PartialObjectMetadata: no data, no spec
    watch_timeout_s: int = 300
    min_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    async def run(self) -> None:
        """Forever (until cancelled): list, watch, and recover from whatever the connection does."""
        resource_version: str | None = None
        delay = self.min_backoff_s
        while True:
            try:
                if resource_version is None:
                    resource_version = await self._list()
                resource_version = await self._watch(resource_version)
                delay = self.min_backoff_s
            except Gone:
                log.info("watch of %s expired (410 Gone): listing again", self.path)
                resource_version = None
            except RETRIED as e:
                _log_retry(f"watch of {self.path}", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)

    async def _list(self) -> str:
        present: set[Key] = set()
        resource_version = ""
        try:
            async for page in self.api.pages(
                self.path,
                label_selector=self.label_selector,
                page_size=self.page_size,
                accept=METADATA_LIST if self.metadata_only else None,
            ):
                for item in page.pop("items", None) or []:  # one page in memory at a time
                    meta = item["metadata"]
                    present.add((meta.get("namespace", ""), meta["name"]))
                    self.on_event("ADDED", item)
                resource_version = str(page["metadata"]["resourceVersion"])
        except ApiError as e:
            if e.status == 410:  # the continue token expired between pages
                raise Gone from e
            raise
        self.on_listed(present)
        return resource_version

    async def _watch(self, resource_version: str) -> str:
        params = {
            "watch": "1",
            "labelSelector": self.label_selector,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.watch_timeout_s),
        }
        accept = METADATA_OBJECT if self.metadata_only else None
        async for event in self.api.stream(
            self.path, params=params, read_timeout=self.watch_timeout_s + 30, accept=accept
        ):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone
                raise ApiError(int(obj.get("code") or 500), str(obj.get("reason", "")), str(obj.get("message", "")))
            resource_version = obj["metadata"]["resourceVersion"]
            if kind != "BOOKMARK":
                self.on_event(str(kind), obj)
        return resource_version


async def until_answered(
    what: str, call: Callable[[], Awaitable[T]], *, min_backoff_s: float = 0.5, max_backoff_s: float = 30.0
) -> T:
    """``call()`` until it answers, with ListWatch's back-off on the failures it retries (a watch that must first
    read something, such as discovery, must not end on an outage the watch itself would outlast)."""
    delay = min_backoff_s
    while True:
        try:
            return await call()
        except RETRIED as e:
            _log_retry(what, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff_s)


def _log_retry(what: str, error: Exception, delay: float) -> None:
    # An outage is reported once by the client (ApiHealth): each retry during it is DEBUG only.
    level = logging.DEBUG if isinstance(error, ApiUnavailable) else logging.WARNING
    log.log(level, "%s failed: %s; retrying in %.1f s", what, error, delay)
