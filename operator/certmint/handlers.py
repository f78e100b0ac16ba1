"""kopf registration: each handler unpacks its arguments and hands over to the controller.

Handlers watch and enqueue; they never reconcile inline. They are ``async def`` so that kopf
runs them on the event loop (plain ``def`` handlers run in a thread pool, and the work queue is
not thread-safe). This keeps kopf's
per-object workers free, lets bursts of events for one object collapse into
one reconcile, and leaves kopf nothing to write on our objects (no
finalizers, no progress annotations): status is written by the controller only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import kopf

from certmint import __version__
from certmint.controller.app import build_operator
from certmint.controller.runtime import Operator
from certmint.controller.state import Kind
from certmint.http import start_http_server
from certmint.kopf_adapter import NoDiffBase
from certmint.kube.client import (
    USER_AGENT,
    ApiHealth,
    KubeClient,
    OutageLogFilter,
    credentials_from_kopf,
    health_trace,
)
from certmint.kube.resources import CERTIFICATE_NAME_LABEL, GROUP
from certmint.settings import Settings

log = logging.getLogger("certmint")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = Settings.from_env()
    # Secrets are watched by the operator itself (controller.runtime.watch_secrets): only ours, selected by
    # the API server, and kept as a resourceVersion each instead of in kopf's per-object memory.
    # CertificateRequests made for a Certificate are signed inline; only workloads' own requests need watching.
    # Leaving ours out saves two watch events per issuance in the API server and here.
    settings.watching.label_selectors[GROUP, "certificaterequests"] = f"!{CERTIFICATE_NAME_LABEL}"
    settings.posting.level = logging.WARNING  # our own Events say what happened; kopf's would repeat them
    settings.persistence.finalizer = f"{GROUP}/finalizer"  # never added by us, but named for clarity
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.watching.server_timeout = 300
    settings.watching.chunk_size = 500  # list 10,000 Certificates in pages, not in one response held at once
    # kopf starts one worker task per object with events and keeps it 5 s for more: a restart's listing of
    # 10,000 Certificates made 10,000 tasks at once. Our handlers only record and enqueue, so a bounded
    # number of short-lived workers keeps up without that burst. A worker holds its slot for idle_timeout
    # after its last event, which bounds the rate: 0.5 s made it 400 objects/s, 25 s of a restart at 10,000;
    # 0.02 s leaves it to the handlers' own cost. (0 would spin: kopf's wait for the next event gives up
    # before it could get one.)
    settings.queueing.worker_limit = 200
    settings.queueing.idle_timeout = 0.02
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    op = build_operator(config, KubeClient(max_connections=config.max_connections))
    # kopf logs each failed attempt of its own requests as an ERROR; during an API server outage (reported
    # once by op.api.health, which kopf's session feeds too, see login()) those lines go to DEBUG.
    for handler in logging.getLogger().handlers:
        handler.addFilter(OutageLogFilter(op.api.health))
    memo.operator = op
    memo.elector_task = asyncio.create_task(op.lead(), name="certmint-leader-election")
    memo.secrets_task = asyncio.create_task(_watch_secrets(op), name="certmint-secret-watch")
    memo.bundle_inputs_task = asyncio.create_task(_watch_bundle_inputs(op), name="certmint-bundle-watch")
    if config.pod_certificates:
        memo.pod_requests_task = asyncio.create_task(_watch_pod_requests(op), name="certmint-pod-request-watch")
    memo.housekeeping_task = asyncio.create_task(op.release_memory_when_quiet(), name="certmint-housekeeping")
    if config.http_port:
        memo.http = await start_http_server(
            config.http_port, is_alive=lambda: _alive(op, memo), is_ready=lambda: op.ready
        )
    log.info("certmint %s starting: %s", __version__, config)


def _alive(op: Operator, memo: kopf.Memo) -> bool:
    """Liveness: the Secret and Bundle watches run, the PodCertificateRequest watch has not failed (it ends on its
    own only where the API server does not serve them), and the leader's workers run or a standby's campaign does."""
    for watch in ("secrets_task", "bundle_inputs_task"):
        task_: asyncio.Task[None] | None = memo.get(watch)
        if task_ is not None and task_.done():
            return False
    pod_requests: asyncio.Task[None] | None = memo.get("pod_requests_task")
    if pod_requests is not None and pod_requests.done() and (pod_requests.cancelled() or pod_requests.exception()):
        return False
    if op.queue.started:
        return op.queue.alive
    task: asyncio.Task[None] | None = memo.get("elector_task")
    return task is not None and not task.done()


async def _watch_secrets(op: Operator) -> None:
    await op.logged_in.wait()
    await op.watch_secrets()


async def _watch_bundle_inputs(op: Operator) -> None:
    await op.logged_in.wait()
    await op.watch_bundle_inputs()


async def _watch_pod_requests(op: Operator) -> None:
    await op.logged_in.wait()
    await op.watch_pod_requests()


def kopf_session(info: kopf.ConnectionInfo, health: ApiHealth) -> kopf.AiohttpSession:
    """kopf's HTTP session, built as kopf builds its own, plus certmint's User-Agent and outage accounting.

    A login handler may return its own aiohttp session (kopf.AiohttpSession, kopf's documented way to add
    headers); kopf owns it from then on and closes it. Its requests feed ``health`` through a trace.
    """
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=info.as_ssl_context()),
        headers={**info.as_http_headers(), "User-Agent": USER_AGENT},
        proxy=info.proxy_url,
        trust_env=info.trust_env,
        trace_configs=[health_trace(health)],
    )
    return kopf.AiohttpSession(
        server=info.server,
        default_namespace=info.default_namespace,
        priority=info.priority,
        expiration=info.expiration,
        aiohttp_session=session,
    )


@kopf.on.login()
async def login(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> kopf.AiohttpSession | None:
    info = kopf.login_with_service_account(settings=settings, **kwargs) or kopf.login_with_kubeconfig(
        settings=settings, **kwargs
    )
    if info is None:
        return None
    op: Operator = memo.operator
    await op.log_in(credentials_from_kopf(info))
    return kopf_session(info, op.api.health)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for task_name in ("elector_task", "secrets_task", "bundle_inputs_task", "pod_requests_task", "housekeeping_task"):
        if memo.get(task_name) is not None:
            memo[task_name].cancel()
    op: Operator | None = memo.get("operator")
    if op is not None:
        op.queue.halt()  # no write after this point
        if op.elector is not None:
            await op.elector.release()
        await op.stop()
    if memo.get("http") is not None:
        await memo.http.cleanup()


@kopf.on.event(GROUP, "certificates")
async def certificate_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo.operator.observe_certificate(event["type"], event["object"])


@kopf.on.event(GROUP, "issuers")
async def issuer_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo.operator.observe_issuer(Kind.ISSUER, event["type"], event["object"])


@kopf.on.event(GROUP, "clusterissuers")
async def cluster_issuer_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo.operator.observe_issuer(Kind.CLUSTER_ISSUER, event["type"], event["object"])


@kopf.on.event(GROUP, "certificaterequests")
async def request_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo.operator.observe_request(event["type"], event["object"])


@kopf.on.event(GROUP, "bundles")
async def bundle_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo.operator.observe_bundle(event["type"], event["object"])
