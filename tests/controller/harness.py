"""The real operator over the in-memory API (tests/controller/fake_api.py), on a fake clock.

:class:`Harness` builds an :class:`Operator` wired as the running operator wires it
(:func:`build_operator`), plays kopf's part — watch events of Certificates, issuers and
CertificateRequests go to the ``observe_*`` methods (:func:`deliver_kopf_event`) — and runs the
operator's own Secret watch (``Operator.watch_secrets``, a real ``ListWatch`` over the fake's
``stream``). Those two functions are the only places that know how the operator is put together:
when it changes, change them.

``settle()`` runs everything queued until nothing is left to do: no watch event undelivered, no key
queued or being reconciled. ``advance(seconds)`` moves the clock and fires the timers then due
(renewals, retries, issuer re-checks). Nothing waits on wall-clock time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
from collections.abc import Callable
from typing import Any

from certmint.controller import app
from certmint.controller.runtime import Operator
from certmint.controller.state import Kind
from certmint.kube import resources
from certmint.kube.client import JSON
from certmint.settings import Settings
from tests.controller.fake_api import Change, FakeKube, Target, watch_event
from tests.integration.builders import certificate
from tests.unit.builders import NOW, CAPair

OPERATOR_NAMESPACE = "certmint"
NAMESPACE = "apps"
API = resources.API


#: The API requests of one issuance: the CertificateRequest, its signed status, the Secret (key and
#: certificate in one write), the Certificate's status, one Event. Nothing is read.
ISSUANCE_REQUESTS = {
    ("create", "certificaterequests"): 1,
    ("patch", "certificaterequests/status"): 1,
    ("create", "secrets"): 1,
    ("patch", "certificates/status"): 1,
    ("create", "events"): 1,
}
#: A re-issuance or renewal writes into the existing Secret instead of creating it.
REISSUE_REQUESTS = {
    ("create", "certificaterequests"): 1,
    ("patch", "certificaterequests/status"): 1,
    ("patch", "secrets"): 1,
    ("patch", "certificates/status"): 1,
    ("create", "events"): 1,
}


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, start: datetime.datetime = NOW) -> None:
        self.t = start.timestamp()

    def __call__(self) -> float:
        return self.t

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.t, datetime.UTC)


class Crash(BaseException):
    """Raised inside a request to stop the operator at that point, as if its process died there.

    A BaseException: the work queue catches Exception (a reconciler bug) and retries; a process that
    dies retries nothing.
    """


async def _run_inline(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def build_operator(settings: Settings, api: FakeKube, clock: FakeClock) -> Operator:
    """The operator as ``handlers.startup`` builds it (``controller.app.build_operator``), except that RSA key
    generation runs inline instead of in a worker process (the tier stays in one process)."""
    op = app.build_operator(settings, api, clock=clock)
    op.run_in_process = _run_inline  # type: ignore[method-assign]
    return op


#: What kopf watches for the operator (handlers.py: one ``kopf.on.event`` per resource, and the label
#: selector handlers.startup sets for CertificateRequests), as (resource, label selector).
KOPF_WATCHES: tuple[tuple[str, str | None], ...] = (
    ("certificates", None),
    ("issuers", None),
    ("clusterissuers", None),
    ("certificaterequests", f"!{resources.CERTIFICATE_NAME_LABEL}"),
)


def deliver_kopf_event(op: Operator, resource: str, event_type: str | None, body: JSON) -> None:
    """What handlers.py's kopf event handlers do with one event (``None``: the object was listed)."""
    if resource == "certificates":
        op.observe_certificate(event_type, body)
    elif resource == "issuers":
        op.observe_issuer(Kind.ISSUER, event_type, body)
    elif resource == "clusterissuers":
        op.observe_issuer(Kind.CLUSTER_ISSUER, event_type, body)
    elif resource == "certificaterequests":
        op.observe_request(event_type, body)
    else:
        raise AssertionError(resource)


def controller_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "namespace": OPERATOR_NAMESPACE,
        "workers": 4,
        "http_port": 0,
        "leader_election": False,
        "identity": "controller-tier",
        # A rotation's re-issues unpaced: the fake clock only moves when a test says so (pacing has its own test).
        "rotation_reissue_rate": 1e9,
    }
    base.update(overrides)
    return Settings(**base)


class Harness:
    def __init__(self, settings: Settings | None = None) -> None:
        self.clock = FakeClock()
        self.api = FakeKube(self.clock)
        self.settings = settings or controller_settings()
        self.op = build_operator(self.settings, self.api, self.clock)
        self._kopf_cursor = 0
        self._secret_watch: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start as the operator starts: kopf lists and then watches, the Secret watch lists, the leader starts."""
        self._kopf_list()
        self._secret_watch = asyncio.create_task(self.op.watch_secrets(), name="controller-tier-secret-watch")
        for _ in range(1000):
            if self.api.open_watches:
                break
            await asyncio.sleep(0)
        else:
            raise AssertionError("the Secret watch never started")
        await self.op.start()
        await self.settle()

    async def stop(self) -> None:
        await self._halt()

    async def restart(self) -> None:
        """A fresh operator process over the same API: nothing in memory survives, the API keeps everything."""
        await self._halt()
        self.op = build_operator(self.settings, self.api, self.clock)
        await self.start()

    async def _halt(self) -> None:
        if self._secret_watch is not None:
            self._secret_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._secret_watch
            self._secret_watch = None
        await self.op.queue.stop()

    def _kopf_list(self) -> None:
        """kopf's initial listing: every existing object once, with no event type."""
        for resource, selector in KOPF_WATCHES:
            collection = Target(API, None, resource, None, None)
            for obj in self.api.items(_collection_path(collection), label_selector=selector):
                deliver_kopf_event(self.op, resource, None, obj)
        self._kopf_cursor = len(self.api.history)

    def _kopf_deliver(self) -> bool:
        delivered = False
        while self._kopf_cursor < len(self.api.history):
            change: Change = self.api.history[self._kopf_cursor]
            self._kopf_cursor += 1
            for resource, selector in KOPF_WATCHES:
                event = watch_event(change, Target(API, None, resource, None, None), selector)
                if event is not None:
                    deliver_kopf_event(self.op, resource, event["type"], event["object"])
                    delivered = True
        return delivered

    # -- time ------------------------------------------------------------------------------------------

    async def settle(self, *, max_rounds: int = 20_000) -> None:
        """Deliver watch events and run queued reconciles until there is nothing left to do."""
        idle = 0
        for _ in range(max_rounds):
            busy = self._kopf_deliver()
            await asyncio.sleep(0)
            busy = busy or self.op.queue.depth > 0 or not self.api.watches_caught_up()
            idle = 0 if busy else idle + 1
            if idle >= 5:
                return
            if not self.op.queue.alive:
                raise AssertionError("a work-queue task ended (a Crash, or a bug in the queue)")
        raise AssertionError(f"the operator did not settle in {max_rounds} rounds (a reconcile loop?)")

    async def advance(self, seconds: float) -> None:
        """Move the clock and run what becomes due (timers fire at their time, not before)."""
        self.clock.t += seconds
        self.op.queue.wake()  # its timer task sleeps in wall-clock time until its next timer
        await self.settle()

    async def advance_to(self, moment: datetime.datetime) -> None:
        await self.advance(max(0.0, moment.timestamp() - self.clock()))

    # -- objects -----------------------------------------------------------------------------------------

    def create(self, obj: JSON) -> JSON:
        """``kubectl create`` of a certmint object or a Secret."""
        meta = obj["metadata"]
        if obj["kind"] == "Secret":
            return self.api.put(resources.secret_path(meta["namespace"]), obj)
        return self.api.put(resources.object_path(obj["kind"], meta.get("namespace")), obj)

    def patch(self, kind: str, namespace: str | None, name: str, patch: JSON) -> JSON:
        """``kubectl patch --type merge`` by a user."""
        path = resources.secret_path(namespace or "", name) if kind == "Secret" else None
        return self.api.edit(path or resources.object_path(kind, namespace, name), patch)

    def delete(self, kind: str, namespace: str | None, name: str) -> None:
        path = resources.secret_path(namespace or "", name) if kind == "Secret" else None
        self.api.remove(path or resources.object_path(kind, namespace, name))

    def get(self, kind: str, namespace: str | None, name: str) -> JSON:
        obj = self.api.peek(resources.object_path(kind, namespace, name))
        assert obj is not None, f"{kind} {namespace}/{name} does not exist"
        return obj

    def certificate(self, name: str, namespace: str = NAMESPACE) -> JSON:
        return self.get("Certificate", namespace, name)

    def secret(self, name: str, namespace: str = NAMESPACE) -> JSON | None:
        return self.api.peek(resources.secret_path(namespace, name))

    def secret_data(self, name: str, namespace: str = NAMESPACE) -> dict[str, bytes]:
        secret = self.secret(name, namespace)
        assert secret is not None, f"Secret {namespace}/{name} does not exist"
        return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}

    def requests(self, namespace: str = NAMESPACE) -> list[JSON]:
        return self.api.items(resources.object_path("CertificateRequest", namespace))

    def events(self, name: str, namespace: str = NAMESPACE) -> list[JSON]:
        """The Events about the object ``name``, oldest first."""
        events = self.api.items(f"/api/v1/namespaces/{namespace}/events")
        return [e for e in events if e["involvedObject"]["name"] == name]

    def mark(self) -> dict[tuple[str, str], int]:
        """The request counts now, for :meth:`since`."""
        return dict(self.api.requests)

    def since(self, mark: dict[tuple[str, str], int], *, reads: bool = True) -> dict[tuple[str, str], int]:
        """Requests by (verb, resource) made since ``mark``; ``reads=False`` leaves out get, list and watch."""
        counts = {k: n - mark.get(k, 0) for k, n in self.api.requests.items() if n - mark.get(k, 0)}
        return counts if reads else {k: n for k, n in counts.items() if k[0] not in ("get", "list", "watch")}

    async def issued(self, name: str, *, issuer: str, **spec: Any) -> dict[str, Any]:
        """Create a Certificate (a Service's name, ``duration`` 24h unless given), settle, and return its status
        once Ready."""
        spec.setdefault("duration", "24h")
        self.create(certificate(name, NAMESPACE, issuer_name=issuer, **spec))
        await self.settle()
        cert = self.certificate(name)
        assert condition(cert, "Ready")["status"] == "True", cert.get("status")
        status: dict[str, Any] = cert["status"]
        return status

    def event_reasons(self, name: str, namespace: str = NAMESPACE) -> list[str]:
        return [e["reason"] for e in self.events(name, namespace)]

    # -- a standby replica (leader election) --------------------------------------------------------------

    async def start_standby(self) -> Standby:
        """A second replica over the same API that does not lead: kopf lists into it and its Secret watch runs, so
        its state and queue fill from what it observes, but its workers do not run (``Operator.lead`` starts them
        only with the Lease). :meth:`take_over` makes it the leader.

        Both replicas share the one fake API (and so its request counters): count a replica's requests over a
        stretch where the other makes none."""
        standby = build_operator(self.settings, self.api, self.clock)
        for resource, selector in KOPF_WATCHES:
            collection = Target(API, None, resource, None, None)
            for obj in self.api.items(_collection_path(collection), label_selector=selector):
                deliver_kopf_event(standby, resource, None, obj)
        cursor = len(self.api.history)
        open_before = self.api.open_watches
        watch = asyncio.create_task(standby.watch_secrets(), name="controller-tier-standby-secret-watch")
        for _ in range(1000):
            if self.api.open_watches > open_before:
                break
            await asyncio.sleep(0)
        else:
            raise AssertionError("the standby's Secret watch never started")
        await self.settle()
        return Standby(standby, watch, cursor)

    async def take_over(self, standby: Standby) -> None:
        """The leader dies (its workers and watches stop; it writes nothing more) and ``standby`` wins the Lease:
        it has observed every watch event until now, and starts leading as ``Operator.lead`` does, then settles."""
        # kopf's watches delivered to the standby what they delivered to the leader, in the same order.
        for change in self.api.history[standby.kopf_cursor :]:
            for resource, selector in KOPF_WATCHES:
                event = watch_event(change, Target(API, None, resource, None, None), selector)
                if event is not None:
                    deliver_kopf_event(standby.op, resource, event["type"], event["object"])
        await self._halt()
        self.op, self._secret_watch, self._kopf_cursor = standby.op, standby.secret_watch, len(self.api.history)
        await self.op.start()
        await self.settle()


def _collection_path(target: Target) -> str:
    ns = f"/namespaces/{target.namespace}" if target.namespace else ""
    return f"{target.prefix}{ns}/{target.resource}"


def condition(obj: JSON, type_: str) -> dict[str, Any]:
    """The condition of that type in the object's status (an empty dict when there is none)."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def ca_secret(name: str, namespace: str, ca: CAPair, *, ca_crt: bytes | None = None) -> JSON:
    """A CA key pair Secret as a person creates it for a ``ca`` issuer."""
    data = {"tls.crt": ca.cert_pem, "tls.key": ca.key_pem}
    if ca_crt is not None:
        data["ca.crt"] = ca_crt
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


class Standby:
    """A replica that watches but does not lead (:meth:`Harness.start_standby`)."""

    def __init__(self, op: Operator, secret_watch: asyncio.Task[None], kopf_cursor: int) -> None:
        self.op = op
        self.secret_watch = secret_watch
        self.kopf_cursor = kopf_cursor  # how far into the API's history its kopf watches have delivered
