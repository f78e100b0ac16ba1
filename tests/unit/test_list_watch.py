"""ListWatch's recovery paths, driven by a scripted client.

The real API server (tests/integration/test_secret_watch.py) cannot be made to expire a resourceVersion on
demand, so the 410 and error paths are exercised here with answers shaped like the server's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from certmint.kube.client import ApiError, ApiUnavailable, KubeClient
from certmint.kube.watch import ListWatch


def _secret(name: str, rv: int) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": str(rv)}}


class ScriptedApi(KubeClient):
    """Answers lists and watches from queues; a watch with nothing left to say blocks, like an idle stream."""

    def __init__(
        self, lists: list[list[dict[str, Any]] | ApiError | ApiUnavailable], watches: list[list[dict[str, Any]]]
    ) -> None:
        super().__init__()
        self.lists = lists
        self.watches = watches
        self.watched_from: list[str] = []
        self.watch_started = [asyncio.Event() for _ in range(8)]  # [i] is set when watch number i+1 starts

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        answer = self.lists.pop(0)
        if isinstance(answer, ApiError | ApiUnavailable):
            raise answer
        return {"items": list(answer), "metadata": {"resourceVersion": "100", "continue": ""}}

    async def stream(
        self, path: str, *, params: Mapping[str, str], read_timeout: float, accept: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        self.watched_from.append(params["resourceVersion"])
        self.watch_started[len(self.watched_from) - 1].set()
        if not self.watches:
            await asyncio.Event().wait()
        for event in self.watches.pop(0):
            yield event


async def _run_until_watch(watch: ListWatch, api: ScriptedApi, n: int) -> None:
    """Run ``watch`` until its ``n``-th watch request starts (5 s at most), then stop it."""
    task = asyncio.create_task(watch.run())
    async with asyncio.timeout(5):
        await api.watch_started[n - 1].wait()
    task.cancel()


async def test_gone_relists_and_reports_what_disappeared_meanwhile() -> None:
    api = ScriptedApi(
        lists=[[_secret("a", 1), _secret("b", 2)], [_secret("b", 2), _secret("c", 5)]],
        watches=[
            [
                {"type": "MODIFIED", "object": _secret("a", 3)},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "4"}}},
                {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}},
            ]
        ],
    )
    events: list[tuple[str, str]] = []
    listed: list[set[tuple[str, str]]] = []
    watch = ListWatch(
        api, "/api/v1/secrets", "l", lambda t, o: events.append((t, o["metadata"]["name"])), listed.append
    )
    await _run_until_watch(watch, api, 2)
    assert listed == [{("ns", "a"), ("ns", "b")}, {("ns", "b"), ("ns", "c")}]  # "a" is gone: the caller sees it
    assert events == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("ADDED", "b"), ("ADDED", "c")]
    assert api.watched_from == ["100", "100"]  # each watch starts where its list ended


async def test_errors_back_off_and_retry_then_resume_from_the_last_version() -> None:
    api = ScriptedApi(
        lists=[ApiError(500, "InternalError", "etcd is sulking"), [_secret("a", 1)]],
        watches=[[{"type": "ADDED", "object": _secret("b", 7)}], []],
    )
    listed: list[set[tuple[str, str]]] = []
    watch = ListWatch(api, "/api/v1/secrets", "l", lambda t, o: None, listed.append, min_backoff_s=0.01)
    await _run_until_watch(watch, api, 3)
    assert listed == [{("ns", "a")}]
    # The first stream ended normally after "b": the next watch resumes from b's version, no relist.
    assert api.watched_from == ["100", "7", "7"]


async def test_an_unavailable_api_server_is_retried_quietly(caplog: pytest.LogCaptureFixture) -> None:
    """The outage is the client's to report (once); the watch only retries, with back-off, and logs at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="certmint.watch")
    refused = ApiUnavailable("API server unreachable: ClientConnectorError: connection refused")
    api = ScriptedApi(lists=[refused, refused, refused, [_secret("a", 1)]], watches=[])
    listed: list[set[tuple[str, str]]] = []
    watch = ListWatch(api, "/api/v1/secrets", "l", lambda t, o: None, listed.append, min_backoff_s=0.01)
    await _run_until_watch(watch, api, 1)
    assert listed == [{("ns", "a")}]
    retries = [r for r in caplog.records if r.name == "certmint.watch"]
    assert len(retries) == 3 and all(r.levelno == logging.DEBUG for r in retries)
