"""A small typed REST client for the few Kubernetes calls the operator makes.

Why not the ``kubernetes`` client: it is synchronous (it would block kopf's
event loop) and its generated models cost tens of MiB of memory, against a
budget of 100 MiB for 10,000 certificates. kopf already talks to the API with
aiohttp; this client reuses aiohttp and the credentials kopf logged in with,
speaks plain JSON dicts, and counts every request by verb and resource so that
"API writes per issuance" is a number, not a guess.

Every request says ``User-Agent: certmint/<version>``, so that the API server's audit log and
the ``manager`` of managedFields name certmint (Python's default would say ``Python``).

An API server outage is a state, not an error per request: a request that cannot reach the server
(connection refused or reset, timeout) or that the server refuses while it starts or stops
(429, 502, 503, 504) raises :class:`ApiUnavailable`, and :class:`ApiHealth` — fed by this client
and by kopf's session (see ``handlers.kopf_session``) alike — logs one WARNING when an outage has
lasted a second and one INFO when the server answers again. Callers retry quietly.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import os
import ssl
import tempfile
import time
import types
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from certmint import __version__

JSON = dict[str, Any]
USER_AGENT = f"certmint/{__version__}"
# Answers that mean "not now" rather than "not this request": the server is starting (503 before its
# paths are installed, 429 while its storage initialises), stopping, or behind a failing proxy.
UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504})
# Failures to reach the server at all. TimeoutError covers aiohttp's request and connect timeouts.
CONNECTION_ERRORS: tuple[type[Exception], ...] = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError)

log = logging.getLogger("certmint.api")


class ApiError(Exception):
    """A non-2xx answer from the API server, with its status and Status message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


class ApiUnavailable(ConnectionError):
    """The API server could not be reached or is not serving right now; nothing is wrong with the request.

    Retry later. Deliberately not an :class:`ApiError`: code that turns API refusals into conditions
    on a resource must not record an outage as the resource's failure.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApiHealth:
    """Whether the API server answers, as the operator's requests see it; says so once per outage.

    An outage begins with a failed request and ends with the next request that gets an answer. It is
    announced (one WARNING, with the plan) once it has lasted ``min_outage_s``, so that a blip — one
    refusal while the server initialises a cache, a connection reset and an immediate reconnect —
    stays at DEBUG; an announced outage ends with one INFO saying how long it lasted. Either way its
    end calls ``on_available`` (retry what waited). A failure of a request sent before the last
    recovery belongs to the outage that is over and is ignored. ``settled`` is False during an
    outage and for ``settle_s`` after it, while requests sent meanwhile still fail.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, min_outage_s: float = 1.0, settle_s: float = 10.0
    ) -> None:
        self._clock = clock
        self._min_outage_s = min_outage_s
        self._settle_s = settle_s
        self._down_since: float | None = None
        self._announced = False
        self._failures = 0
        self._recovered_at = float("-inf")
        self.outages = 0  # outages announced so far
        self.on_available: Callable[[], None] | None = None

    @property
    def available(self) -> bool:
        return self._down_since is None

    @property
    def settled(self) -> bool:
        """Available, and for ``settle_s`` already: failures now are news, not echoes of the last outage."""
        return self._down_since is None and self._clock() - self._recovered_at >= self._settle_s

    def now(self) -> float:
        return self._clock()

    def failed(self, error: str, *, sent_at: float) -> None:
        now = self._clock()
        if self._down_since is None:
            if sent_at < self._recovered_at:
                return  # a request sent during the outage that is over: already accounted for
            self._down_since = now
            self._failures = 0
            self._announced = False
        self._failures += 1
        if not self._announced and now - self._down_since >= self._min_outage_s:
            self._announced = True
            self.outages += 1
            log.warning(
                "API server unavailable (%s); reconciles, watches and the Lease retry with back-off until it answers",
                error,
            )

    def succeeded(self) -> None:
        if self._down_since is None:
            return
        now = self._clock()
        level = logging.INFO if self._announced else logging.DEBUG
        log.log(
            level,
            "API server available again after %.1f s (%d requests failed meanwhile); retrying what waited",
            now - self._down_since,
            self._failures,
        )
        self._down_since = None
        self._recovered_at = now
        if self.on_available is not None:
            self.on_available()


def health_trace(health: ApiHealth) -> aiohttp.TraceConfig:
    """Feed ``health`` from the requests of an aiohttp session that is not ours (kopf's)."""

    async def started(
        session: aiohttp.ClientSession, ctx: types.SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        ctx.sent_at = health.now()

    async def ended(
        session: aiohttp.ClientSession, ctx: types.SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        status = params.response.status
        if unavailable_status(status):
            health.failed(f"{status} {params.response.reason}", sent_at=ctx.sent_at)
        else:
            health.succeeded()

    async def raised(
        session: aiohttp.ClientSession, ctx: types.SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        if isinstance(params.exception, CONNECTION_ERRORS):
            health.failed(describe(params.exception), sent_at=ctx.sent_at)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(started)
    trace.on_request_end.append(ended)
    trace.on_request_exception.append(raised)
    return trace


class OutageLogFilter(logging.Filter):
    """For a log handler: during an API server outage, kopf's reports of each failed request go to DEBUG.

    kopf retries its requests itself and logs every failed attempt as an ERROR (one per watch stream
    and attempt: dozens in a few seconds of outage). The outage is reported once by :class:`ApiHealth`;
    kopf's lines stay available with ``--verbose``. "During" includes the settling time after the
    server answers again, when requests sent during the outage still fail. Records with a traceback
    are never touched.
    """

    def __init__(self, health: ApiHealth, *, prefix: str = "kopf.") -> None:
        super().__init__()
        self._health = health
        self._prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno >= logging.WARNING
            and record.exc_info is None
            and record.name.startswith(self._prefix)
            and not self._health.settled
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def describe(error: BaseException) -> str:
    """A one-line description of a connection-level failure, without a traceback."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def unavailable_status(status: int) -> bool:
    return status in UNAVAILABLE_STATUSES


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to authenticate; mirrors what kopf's login handlers return."""

    server: str
    ca_data: bytes | None = None
    ca_path: str | None = None
    insecure: bool = False
    token: str | None = None
    token_path: str | None = None  # re-read on every new session: projected tokens rotate
    certificate_data: bytes | None = None
    private_key_data: bytes | None = None
    certificate_path: str | None = None
    private_key_path: str | None = None


def _maybe_b64(value: str | bytes | None) -> bytes | None:
    """kubeconfig ``*-data`` fields are base64; accept PEM as well."""
    if value is None:
        return None
    raw = value.encode() if isinstance(value, str) else value
    return raw if raw.lstrip().startswith(b"-----BEGIN") else base64.b64decode(raw)


def credentials_from_kopf(info: Any) -> Credentials:
    """Translate kopf's ConnectionInfo (duck-typed, so this module needs no kopf import)."""
    token_path = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    in_cluster = info.server == "https://kubernetes.default.svc" and os.path.exists(token_path)
    return Credentials(
        server=info.server,
        ca_data=_maybe_b64(info.ca_data),
        ca_path=str(info.ca_path) if info.ca_path else None,
        insecure=bool(info.insecure),
        token=info.token,
        token_path=token_path if in_cluster else None,
        certificate_data=_maybe_b64(info.certificate_data),
        private_key_data=_maybe_b64(info.private_key_data),
        certificate_path=str(info.certificate_path) if info.certificate_path else None,
        private_key_path=str(info.private_key_path) if info.private_key_path else None,
    )


def _ssl_context(creds: Credentials) -> ssl.SSLContext | bool:
    if creds.insecure:
        return False
    ctx = ssl.create_default_context(cafile=creds.ca_path, cadata=creds.ca_data.decode() if creds.ca_data else None)
    if creds.certificate_path and creds.private_key_path:
        ctx.load_cert_chain(creds.certificate_path, creds.private_key_path)
    elif creds.certificate_data and creds.private_key_data:
        # ssl only loads client certificates from files: write them to private temp files.
        with tempfile.TemporaryDirectory() as d:
            cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
            for path, data in ((cert, creds.certificate_data), (key, creds.private_key_data)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            ctx.load_cert_chain(cert, key)
    return ctx


class KubeClient:
    """JSON over HTTP to one API server; one aiohttp session with a bounded connection pool."""

    def __init__(
        self,
        creds: Credentials | None = None,
        *,
        max_connections: int = 32,
        timeout: float = 30.0,
        health: ApiHealth | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self._creds = creds or Credentials(server="")
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._user_agent = user_agent
        self.health = health or ApiHealth()
        self.requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self.on_request: Callable[[str, str], None] | None = None

    async def set_credentials(self, creds: Credentials) -> None:
        """Log in (again): kopf calls its login handler at start and whenever a token expires."""
        if creds != self._creds:
            self._creds = creds
            await self.close()

    def _headers(self) -> dict[str, str]:
        token = self._creds.token
        if self._creds.token_path:
            with open(self._creds.token_path, encoding="utf-8") as f:
                token = f.read().strip()
        headers = {"User-Agent": self._user_agent}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=_ssl_context(self._creds))
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _count(self, verb: str, path: str) -> None:
        resource = _resource_of(path)
        self.requests[(verb, resource)] += 1
        if self.on_request is not None:
            self.on_request(verb, resource)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: JSON | None = None,
        content_type: str = "application/json",
        verb: str | None = None,
        accept: str | None = None,
    ) -> JSON:
        verb = verb or {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
        self._count(verb, path)
        headers = self._headers()
        if accept:
            headers["Accept"] = accept
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body, separators=(",", ":"))
        session = self._get_session()
        sent_at = self.health.now()
        try:
            async with session.request(
                method, self._creds.server + path, params=params, data=data, headers=headers
            ) as resp:
                payload = await resp.read()
                status = resp.status
        except CONNECTION_ERRORS as e:
            raise self._unreachable(e, sent_at) from e
        if unavailable_status(status):
            raise self._refused(status, payload, sent_at)
        self.health.succeeded()
        if status >= 400:
            raise _api_error(status, payload)
        result: JSON = json.loads(payload) if payload else {}
        return result

    def _unreachable(self, error: Exception, sent_at: float) -> ApiUnavailable:
        text = describe(error)
        self.health.failed(text, sent_at=sent_at)
        return ApiUnavailable(f"API server unreachable: {text}")

    def _refused(self, status: int, payload: bytes, sent_at: float) -> ApiUnavailable:
        text = str(_api_error(status, payload))
        self.health.failed(text, sent_at=sent_at)
        return ApiUnavailable(f"API server unavailable: {text}", status=status)

    async def stream(
        self, path: str, *, params: Mapping[str, str], read_timeout: float, accept: str | None = None
    ) -> AsyncIterator[JSON]:
        """A watch: the server's events, one JSON object per line, until it ends the stream."""
        self._count("watch", path)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=read_timeout)
        session = self._get_session()
        sent_at = self.health.now()
        headers = self._headers()
        if accept:
            headers["Accept"] = accept
        try:
            async with session.get(self._creds.server + path, params=params, headers=headers, timeout=timeout) as resp:
                if unavailable_status(resp.status):
                    raise self._refused(resp.status, await resp.read(), sent_at)
                self.health.succeeded()
                if resp.status >= 400:
                    raise _api_error(resp.status, await resp.read())
                async for event in json_lines(resp.content.iter_any()):
                    yield event
        except ApiUnavailable:
            raise
        except CONNECTION_ERRORS as e:  # also a stream cut in the middle: the server went away
            raise self._unreachable(e, sent_at) from e

    async def get(self, path: str) -> JSON | None:
        """The object, or None when it does not exist."""
        try:
            return await self.request("GET", path)
        except ApiError as e:
            if e.not_found:
                return None
            raise

    async def pages(
        self, path: str, *, label_selector: str | None = None, page_size: int = 500, accept: str | None = None
    ) -> AsyncIterator[JSON]:
        """A list in pages of ``page_size``, one response at a time; the last page carries the list's version."""
        params = {"limit": str(page_size)}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            page = await self.request("GET", path, params=params, verb="list", accept=accept)
            yield page
            cont = page.get("metadata", {}).get("continue")
            if not cont:
                return
            params["continue"] = cont

    async def list(self, path: str, *, label_selector: str | None = None) -> list[JSON]:
        return [
            item async for page in self.pages(path, label_selector=label_selector) for item in page.get("items", [])
        ]

    async def create(self, path: str, body: JSON) -> JSON:
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, body: JSON) -> JSON:
        return await self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    async def delete(self, path: str, *, propagation: str = "Background", resource_version: str | None = None) -> bool:
        """Delete (only at ``resource_version`` when given: a precondition); False when it was already gone."""
        body: JSON = {"propagationPolicy": propagation}
        if resource_version is not None:
            body["preconditions"] = {"resourceVersion": resource_version}
        try:
            await self.request("DELETE", path, body=body)
        except ApiError as e:
            if e.not_found:
                return False
            raise
        return True


#: Accept headers that ask the API server for objects' metadata only (PartialObjectMetadata, as metadata
#: informers do): a list or watch of Secrets then carries no data, which the server need not send nor we parse.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
METADATA_OBJECT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"


async def json_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[JSON]:
    """Newline-delimited JSON from a byte stream, whatever the length of a line (a Secret can be 1 MiB)."""
    buffer = bytearray()
    async for chunk in chunks:
        start = len(buffer)
        buffer += chunk
        while (end := buffer.find(b"\n", start)) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            start = 0
            if line.strip():
                value: JSON = json.loads(line)
                yield value
    if buffer.strip():
        last: JSON = json.loads(bytes(buffer))
        yield last


def _api_error(status: int, payload: bytes) -> ApiError:
    try:
        body = json.loads(payload)
        return ApiError(status, str(body.get("reason", "")), str(body.get("message", "")))
    except ValueError:
        return ApiError(status, "", payload.decode(errors="replace")[:500])


def _resource_of(path: str) -> str:
    """``/api/v1/namespaces/x/secrets/y`` → ``secrets``; ``.../certificates/y/status`` → ``certificates/status``."""
    parts = [p for p in path.split("?", maxsplit=1)[0].split("/") if p]
    if "namespaces" in parts:
        i = parts.index("namespaces")
        rest = parts[i + 2 :] if len(parts) > i + 2 else ["namespaces"]
    else:
        rest = parts[3:] if parts[0] == "apis" else parts[2:]
    if len(rest) >= 3:
        return f"{rest[0]}/{rest[2]}"
    if not rest:
        return "discovery" if parts[:1] in (["api"], ["apis"]) else "?"  # /apis/<group>/<version>, /api/v1
    return rest[0]
