"""An unavailable API server: one WARNING per outage, one INFO at its end; the User-Agent of every request.

The requests go to a small HTTP server on loopback that plays the API server: it answers, refuses
with the statuses a starting or stopping kube-apiserver sends, or is not there at all.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import kopf
import pytest
from aiohttp import web

from certmint import __version__
from certmint.handlers import kopf_session
from certmint.kube.client import ApiError, ApiHealth, ApiUnavailable, Credentials, KubeClient, OutageLogFilter
from tests.controlplane.cluster import free_port

API_LOG = "certmint.api"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _health() -> tuple[Clock, ApiHealth]:
    """An ApiHealth on a test clock: an outage from 1 s of failures, settled 10 s after it ends."""
    clock = Clock()
    return clock, ApiHealth(clock=clock, min_outage_s=1, settle_s=10)


def _outage_records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == API_LOG]


def test_one_warning_per_outage_and_one_info_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock, health = _health()
    back: list[float] = []
    health.on_available = lambda: back.append(clock.now)
    for _ in range(500):  # 500 keys fail during the outage
        health.failed("ClientConnectorError: connection refused", sent_at=clock.now)
        clock.now += 0.01
    assert not health.available
    health.succeeded()
    health.succeeded()
    records = _outage_records(caplog)
    assert [level for level, _ in records] == ["WARNING", "INFO"]
    assert "API server unavailable (ClientConnectorError: connection refused)" in records[0][1]
    assert "retry with back-off" in records[0][1]
    assert "available again after 5.0 s (500 requests failed meanwhile)" in records[1][1]
    assert back == [clock.now]  # what waited is retried once, when the server answers
    assert health.available and health.outages == 1


def test_a_blip_shorter_than_the_minimum_outage_stays_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock, health = _health()
    back: list[float] = []
    health.on_available = lambda: back.append(clock.now)
    health.failed("429 Too Many Requests", sent_at=clock.now)  # a cache initialising at start-up
    clock.now += 0.2
    health.failed("429 Too Many Requests", sent_at=clock.now)
    health.succeeded()
    assert [level for level, _ in _outage_records(caplog)] == ["DEBUG"]
    assert back == [clock.now]  # what failed is retried all the same
    # A real outage right after the blip is announced as any other.
    clock.now += 1
    health.failed("connection refused", sent_at=clock.now)
    clock.now += 1.5
    health.failed("connection refused", sent_at=clock.now)
    health.succeeded()
    assert [level for level, _ in _outage_records(caplog)] == ["DEBUG", "WARNING", "INFO"]


def test_failures_of_requests_sent_during_the_last_outage_are_not_a_new_one(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock, health = _health()
    sent_early = clock.now
    health.failed("reset", sent_at=sent_early)
    clock.now += 3
    health.failed("reset", sent_at=clock.now)
    health.succeeded()
    clock.now += 1
    health.failed("timeout", sent_at=sent_early)  # a long request from the outage ends only now
    assert health.available
    assert not health.settled  # but kopf's reports of such failures are still echoes
    clock.now += 10
    assert health.settled
    assert [level for level, _ in _outage_records(caplog)] == ["WARNING", "INFO"]


def test_outage_filter_moves_kopfs_request_failures_to_debug_while_the_server_is_away() -> None:
    clock, health = _health()
    log_filter = OutageLogFilter(health)

    def record(name: str, level: int = logging.ERROR, *, exc: bool = False) -> logging.LogRecord:
        exc_info = (RuntimeError, RuntimeError("bug"), None) if exc else None
        return logging.LogRecord(name, level, __file__, 1, "Request attempt #1/9 failed", None, exc_info)

    settled = record("kopf._cogs.clients.watching")
    assert log_filter.filter(settled) and settled.levelno == logging.ERROR  # no outage: kopf's errors are news
    health.failed("connection refused", sent_at=clock.now)
    during = record("kopf._cogs.clients.watching")
    assert not log_filter.filter(during)  # the root logger is at WARNING in tests: dropped, not shown
    assert during.levelno == logging.DEBUG and during.levelname == "DEBUG"
    clock.now += 1
    health.succeeded()
    assert not log_filter.filter(record("kopf._core.engines.posting"))  # echoes while the server settles
    with_traceback = record("kopf._core.reactor.running", exc=True)
    assert log_filter.filter(with_traceback) and with_traceback.levelno == logging.ERROR  # a bug stays a bug
    ours = record("certmint.controller.workqueue")
    assert log_filter.filter(ours) and ours.levelno == logging.ERROR
    clock.now += 10
    assert log_filter.filter(record("kopf._cogs.clients.watching"))


# -- against a server on loopback --------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """An HTTP server answering GET /status/<code>; records every request it got."""
    seen: list[web.Request] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request)
        code = int(request.match_info["code"])
        body = '{"kind":"Status","reason":"Test","message":"answer ' + str(code) + '"}'
        return web.Response(status=code, text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/status/{code}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_client_raises_unavailable_for_an_absent_or_refusing_server_and_api_error_otherwise(
    server: tuple[str, list[web.Request]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url, seen = server
    api = KubeClient(Credentials(server=url), health=ApiHealth(min_outage_s=0))
    absent = KubeClient(Credentials(server=f"http://127.0.0.1:{free_port()}"), health=api.health)
    try:
        assert await api.request("GET", "/status/200") == {"kind": "Status", "reason": "Test", "message": "answer 200"}
        with pytest.raises(ApiUnavailable, match="API server unreachable: ClientConnectorError"):
            await absent.request("GET", "/api/v1/secrets")
        for code in (503, 429, 504):
            with pytest.raises(ApiUnavailable) as unavailable:
                await api.request("GET", f"/status/{code}")
            assert unavailable.value.status == code
        assert not api.health.available
        with pytest.raises(ApiError) as refused:  # an answer about the request, not about the server: not an outage
            await api.request("GET", "/status/404")
        assert refused.value.not_found
        assert api.health.available
    finally:
        await api.close()
        await absent.close()
    assert [level for level, _ in _outage_records(caplog)] == ["WARNING", "INFO"]
    assert {r.headers["User-Agent"] for r in seen} == {f"certmint/{__version__}"}


async def test_kopfs_session_says_certmint_and_feeds_the_same_health(
    server: tuple[str, list[web.Request]],
) -> None:
    url, seen = server
    health = ApiHealth()
    session = kopf_session(kopf.ConnectionInfo(server=url, token="t0ken"), health).aiohttp_session
    try:
        async with session.get(f"{url}/status/503"):
            pass
        assert not health.available
        async with session.get(f"{url}/status/200"):
            pass
        assert health.available
        with pytest.raises(OSError):
            async with session.get(f"http://127.0.0.1:{free_port()}/"):
                pass
        assert not health.available
    finally:
        await session.close()
    assert [r.headers["User-Agent"] for r in seen] == [f"certmint/{__version__}"] * 2
    assert {r.headers["Authorization"] for r in seen} == {"Bearer t0ken"}
