"""The running operator: state, API client, one work queue, leadership, and the routing of work to reconcilers.

kopf delivers watch events to ``observe_*``; those update :class:`State` and
enqueue keys. Workers hand each key to the reconciler of its :class:`Kind`
(:meth:`Operator._dispatch`). Nothing here blocks the event loop: RSA key
generation runs in another process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, assert_never

from certmint import metrics
from certmint.controller.housekeeping import release_memory, release_memory_when_quiet
from certmint.controller.processes import worker_pool
from certmint.controller.state import (
    BundleTarget,
    IssuerKey,
    Key,
    Kind,
    State,
    newer_or_equal,
    parse_bundle,
    parse_certificate,
    parse_issuer,
    parse_request,
)
from certmint.controller.workqueue import Pacer, WorkQueue
from certmint.core.approval import DENIED_REASON, FAILED
from certmint.core.bundle import content_digest
from certmint.core.decisions import RENEW_REQUEST
from certmint.core.spec import SIGNER_DOMAIN
from certmint.kube import resources
from certmint.kube.client import ApiError, ApiUnavailable, Credentials, KubeClient
from certmint.kube.leader import LeaderElector, LeaseConfig
from certmint.kube.watch import ListWatch, until_answered
from certmint.settings import Settings

log = logging.getLogger("certmint")
LEASE_NAME = "certmint-operator"
EVENT_COMPONENT = "certmint"  # the source of the Events certmint posts
#: How long a new leader waits for the first list of our Secrets before it starts reconciling anyway.
SECRETS_LISTED_WAIT_S = 60.0

Reconcile = Callable[["Operator", str, str], Awaitable[None]]  # (operator, namespace or "", name)
ReconcileIssuer = Callable[["Operator", Kind, str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Reconcilers:
    """Who handles each :class:`Kind` of key (``controller.app.build_operator`` names them)."""

    certificate: Reconcile
    prune_requests: Reconcile
    issuer: ReconcileIssuer  # Issuer and ClusterIssuer alike
    request: Reconcile
    bundle: Reconcile  # (operator, "", name): Bundles are cluster-scoped
    pod_request: Reconcile


class Operator:
    def __init__(
        self,
        settings: Settings,
        api: KubeClient,
        reconcilers: Reconcilers,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.api = api
        self.reconcilers = reconcilers
        self.state = State()
        self.clock = clock
        # Fair between namespaces (one tenant's backlog cannot starve another's renewals); an unavailable
        # API server is reported once by api.health, so its failures are retried quietly, and all at once
        # when the server answers again.
        self.queue: WorkQueue[Key] = WorkQueue(
            self._dispatch,
            workers=settings.workers,
            clock=clock,
            group_of=lambda key: key[1],
            expected=(ApiUnavailable,),
        )
        api.health.on_available = self.queue.retry_expected
        self.queue.on_timer_fired = lambda key, lag: metrics.scheduler_lag.observe(lag)
        metrics.queue_depth.set_function(lambda: self.queue.depth)
        metrics.scheduled_timers.set_function(lambda: self.queue.scheduled)
        # Set once kopf has logged in and handed over the credentials (log_in): the readiness probe's answer.
        self.logged_in = asyncio.Event()
        self.elector: LeaderElector | None = None
        if settings.leader_election:
            self.elector = LeaderElector(
                api,
                LeaseConfig(
                    namespace=settings.namespace,
                    name=LEASE_NAME,
                    identity=settings.identity,
                    lease_duration=settings.lease_duration,
                    renew_period=settings.lease_renew,
                    retry_period=settings.lease_retry,
                ),
            )
        # Set once every watched namespace's Secrets have been listed (their versions are in state).
        self.secrets_listed = asyncio.Event()
        # A rotation's re-issues, at most CERTMINT_ROTATION_REISSUE_RATE per second (controller.certificates).
        self.reissue_pacer: Pacer[Key] = Pacer(settings.rotation_reissue_rate)
        # The lists a Bundle's plan needs (namespaces, and its targets of each kind) that have arrived.
        self._bundle_lists: set[str] = set()
        self._process_pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.events_seen = 0  # watch events observed (all kinds), for housekeeping
        api.on_request = lambda verb, resource: metrics.api_requests.labels(verb, resource).inc()

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)

    @property
    def ready(self) -> bool:
        return self.logged_in.is_set()

    async def log_in(self, creds: Credentials) -> None:
        """kopf logged in (at start, and again when a token expires): use the same credentials."""
        await self.api.set_credentials(creds)
        self.logged_in.set()

    async def lead(self) -> None:
        """Reconcile only as the leader; until then, watch events keep filling state and the queue.

        Losing the Lease (another replica took it, or the API server was away for longer than the Lease)
        halts the workers at once and campaigns again; winning it back resumes from what was kept.
        """
        await self.logged_in.wait()
        if self.elector is None:
            await self.start()
            metrics.leader.set(1)
            return

        async def started() -> None:
            metrics.leader.set(1)
            await self.start()

        def stopped() -> None:
            self.queue.halt()  # not one more write; keys, timers and interrupted reconciles stay queued
            metrics.leader.set(0)

        await self.elector.run(started, stopped)

    async def _dispatch(self, key: Key) -> None:
        kind, namespace, name = key
        match kind:
            case Kind.CERTIFICATE:
                await self.reconcilers.certificate(self, namespace, name)
            case Kind.PRUNE_REQUESTS:
                await self.reconcilers.prune_requests(self, namespace, name)
            case Kind.ISSUER | Kind.CLUSTER_ISSUER:
                await self.reconcilers.issuer(self, kind, namespace, name)
            case Kind.REQUEST:
                await self.reconcilers.request(self, namespace, name)
            case Kind.BUNDLE:
                await self.reconcilers.bundle(self, namespace, name)
            case Kind.POD_REQUEST:
                await self.reconcilers.pod_request(self, namespace, name)
            case _:
                assert_never(kind)

    async def start(self) -> None:
        """Start reconciling, once the issuers are known and our Secrets listed.

        Certificates and issuers arrive on separate watches in no set order; a Certificate reconciled
        before its issuer was seen would report a spurious "issuer not found". One list of each issuer
        kind before the workers start settles that. A Certificate reconciled before the Secret list
        arrived would read its Secret (one request each, 10,000 at a restart at that scale) where the
        list's versions let it resume from its status; a standby has them already.
        """
        if not self.secrets_listed.is_set():
            try:
                await asyncio.wait_for(self.secrets_listed.wait(), timeout=SECRETS_LISTED_WAIT_S)
            except TimeoutError:
                log.warning(
                    "Secrets not listed after %.0f s: reconciling anyway (reading each Secret)", SECRETS_LISTED_WAIT_S
                )
        paths = [(Kind.CLUSTER_ISSUER, resources.object_path("ClusterIssuer", None))]
        namespaces = self.settings.watch_namespaces or (None,)
        paths += [(Kind.ISSUER, resources.object_path("Issuer", ns)) for ns in namespaces]
        for kind, path in paths:
            try:
                items = await self.api.list(path)
            except (ApiError, ApiUnavailable) as e:  # the watches deliver them anyway; this only avoids a false alarm
                level = logging.DEBUG if isinstance(e, ApiUnavailable) else logging.WARNING  # an outage: said once
                log.log(level, "listing %s failed: %s", path, e)
                continue
            for body in items:
                self.observe_issuer(kind, "ADDED", body)
        self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()
        await self.api.close()
        if self._process_pool is not None:
            self._process_pool.shutdown(wait=False, cancel_futures=True)

    async def post_event(self, obj: resources.ObjectRef, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event about ``obj``, unless CERTMINT_POST_EVENTS is off. An Event is nice to have: one the
        API server refuses fails nothing. Events of a cluster-scoped object go to namespace "default", the one
        namespace besides "" where the API server keeps them."""
        if not self.settings.post_events:
            return
        try:
            await resources.post_event(
                self.api,
                obj,
                type_=type_,
                reason=reason,
                message=message,
                component=EVENT_COMPONENT,
                now=self.now(),
                fallback_namespace="default",
            )
        except ApiError as e:
            log.debug("posting an Event failed: %s", e)

    def schedule(self, key: Key, when: datetime.datetime) -> None:
        self.queue.add_at(key, when.timestamp())

    async def run_in_process(self, fn: Callable[..., Any], *args: Any) -> Any:
        """CPU-heavy work that holds the GIL (RSA key generation does) runs in a worker process.

        A thread would not help: it would still stall the event loop, and with it every other
        reconcile and the health endpoint. The pool is started on first use only.
        """
        if self._process_pool is None:
            self._process_pool = worker_pool(self.settings.keygen_processes)
        return await asyncio.get_running_loop().run_in_executor(self._process_pool, fn, *args)

    # -- watch events (called from the thin kopf handlers) ----------------------------------------------

    def observe_certificate(self, event_type: str | None, body: dict[str, Any]) -> None:
        self.events_seen += 1
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            gone = self.state.certificates.pop(key, None)
            if gone is not None:
                metrics.forget_certificate(gone.namespace, gone.name)
        else:
            current = self.state.certificates.get(key)
            if current is not None and current.uid == meta["uid"]:
                if not newer_or_equal(meta["resourceVersion"], current.resource_version):
                    return
            else:
                current = None
            if current is not None and current.generation == int(meta.get("generation", 1)):
                # Status-only change (usually our own write): the parsed spec still holds.
                current.resource_version = meta["resourceVersion"]
                current.store_status(dict(body.get("status") or {}))
                request = (meta.get("annotations") or {}).get(RENEW_REQUEST)
                if request != current.renew_request:  # a metadata change asking for a re-issue: look again
                    current.renew_request = request
                    current.settled = None
            else:
                self.state.certificates[key] = parse_certificate(body)
        self.queue.add((Kind.CERTIFICATE, *key))

    def observe_issuer(self, kind: Kind, event_type: str | None, body: dict[str, Any]) -> None:
        self.events_seen += 1
        meta = body["metadata"]
        key = (kind, meta.get("namespace") or "", meta["name"])
        if event_type == "DELETED":
            self.state.issuers.pop(key, None)
        else:
            current = self.state.issuers.get(key)
            if current is not None:
                if current.uid == meta["uid"] and not newer_or_equal(meta["resourceVersion"], current.resource_version):
                    return
                record = parse_issuer(kind, body)
                if current.uid == record.uid and current.generation == record.generation:
                    # Status-only change (often our own): keep what the reconciler learnt.
                    current.resource_version = record.resource_version
                    current.status = record.status
                    if current.replace_immediately == record.replace_immediately:
                        return
                    current.replace_immediately = record.replace_immediately  # checked again, below
            self.state.issuers[key] = parse_issuer(kind, body)
        self.queue.add(key)

    def observe_request(self, event_type: str | None, body: dict[str, Any]) -> None:
        self.events_seen += 1
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self.state.requests.pop(key, None)
            return
        record = parse_request(body, resources.CERTIFICATE_NAME_LABEL)
        if record.managed_by_certificate or request_is_final(record.status):
            # Requests made for a Certificate are signed inline by its reconciler (one crashed in the
            # middle stays unsigned and is pruned with the history); finished ones need no memory.
            self.state.requests.pop(key, None)
            return
        self.state.requests[key] = record
        self.queue.add((Kind.REQUEST, *key))

    def observe_secret(self, event_type: str | None, body: dict[str, Any]) -> None:
        self.events_seen += 1
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        key = (namespace, name)
        if event_type == "DELETED":
            # Deleted, or only its label removed (a label-selected watch says DELETED for both): read it before
            # writing, so that a Secret still there is repaired rather than signed for again.
            self.state.secret_versions[key] = None
            self.state.secrets_to_read.add(key)
        else:
            rv = meta["resourceVersion"]
            if not newer_or_equal(rv, self.state.secret_versions.get(key)):
                return
            if self.state.secret_versions.get(key) == rv:
                return  # our own write, already accounted for by secret_written()
            self.state.secret_versions[key] = rv
        # The annotation holds the Certificate's full name; the label only a shortened one when the name is long.
        owner = (meta.get("annotations") or {}).get(resources.CERTIFICATE_NAME_LABEL) or (meta.get("labels") or {}).get(
            resources.CERTIFICATE_NAME_LABEL
        )
        if owner:
            self.queue.add((Kind.CERTIFICATE, namespace, owner))
        self._enqueue_issuers_of_secret(namespace, name)

    async def release_memory_when_quiet(self, interval: float = 10.0) -> None:
        """After a burst of events or reconciles, return freed memory to the system (see housekeeping)."""

        def release() -> None:
            release_memory()
            metrics.memory_releases.inc()

        await release_memory_when_quiet(
            lambda: self.events_seen + self.queue.processed, lambda: self.queue.depth > 0, interval, release
        )

    async def watch_secrets(self) -> None:
        """Watch the Secrets carrying our label (in every watched namespace) until cancelled."""
        namespaces = self.settings.watch_namespaces or (None,)
        listed: set[str | None] = set()

        def on_listed(namespace: str | None, present: set[tuple[str, str]]) -> None:
            self.secrets_relisted(namespace, present)
            listed.add(namespace)
            if len(listed) == len(namespaces):
                self.state.secrets_listed = True
                self.secrets_listed.set()

        watches = [
            ListWatch(
                self.api,
                resources.secret_path(ns) if ns else "/api/v1/secrets",
                label_selector=resources.CERTIFICATE_NAME_LABEL,
                on_event=self.observe_secret,
                on_listed=functools.partial(on_listed, ns),
                metadata_only=True,
            )
            for ns in namespaces
        ]
        await asyncio.gather(*(w.run() for w in watches))

    def secrets_relisted(self, namespace: str | None, present: set[tuple[str, str]]) -> None:
        """After a (re)list: Secrets we knew that are gone were deleted while the watch was away."""
        for key, version in list(self.state.secret_versions.items()):
            if version is not None and key not in present and (namespace is None or key[0] == namespace):
                self.state.secret_versions[key] = None
                self.state.secrets_to_read.add(key)  # deleted, or its label removed: see observe_secret
                for cert in self.state.certificates_with_secret(*key):
                    self.queue.add((Kind.CERTIFICATE, *cert))
                self._enqueue_issuers_of_secret(*key)

    def secret_written(self, namespace: str, name: str, resource_version: str) -> None:
        """Record our own Secret write before its watch event arrives; a CA Secret wakes its issuers."""
        self.state.secret_versions[(namespace, name)] = resource_version
        self._enqueue_issuers_of_secret(namespace, name)

    def _enqueue_issuers_of_secret(self, namespace: str, name: str) -> None:
        for issuer in self.state.issuers_with_ca_secret(namespace, name, self.settings.namespace):
            self.queue.add(issuer)

    def enqueue_dependents_of_issuer(self, key: IssuerKey) -> None:
        for namespace, name in self.state.certificates_using(key):
            self.queue.add((Kind.CERTIFICATE, namespace, name))
        for namespace, name in self.state.requests_using(key):
            self.queue.add((Kind.REQUEST, namespace, name))
        if key[0] is Kind.CLUSTER_ISSUER:
            for bundle in self.state.bundles_using_issuer(key[2]):
                self.queue.add((Kind.BUNDLE, "", bundle))
            for namespace, name in self.state.pod_requests_for(f"{SIGNER_DOMAIN}/{key[2]}"):
                self.queue.add((Kind.POD_REQUEST, namespace, name))

    # -- Bundles and what they write ---------------------------------------------------------------------

    def observe_bundle(self, event_type: str | None, body: dict[str, Any]) -> None:
        self.events_seen += 1
        meta = body["metadata"]
        name = meta["name"]
        if event_type == "DELETED":
            self.state.bundles.pop(name, None)
        else:
            current = self.state.bundles.get(name)
            if current is not None and current.uid == meta["uid"]:
                if not newer_or_equal(meta["resourceVersion"], current.resource_version):
                    return
                if current.generation == int(meta.get("generation", 1)):
                    current.resource_version = meta["resourceVersion"]  # status only (usually ours)
                    current.status = dict(body.get("status") or {})
                    return
            self.state.bundles[name] = parse_bundle(body)
        self.queue.add((Kind.BUNDLE, "", name))

    @property
    def bundle_inputs_listed(self) -> bool:
        """Namespaces and every kind of target in every watched namespace have been listed once."""
        return len(self._bundle_lists) == 1 + len(resources.TARGET_KINDS) * len(self.settings.watch_namespaces or ("",))

    def _enqueue_bundles(self) -> None:
        for name in self.state.bundles:
            self.queue.add((Kind.BUNDLE, "", name))

    def observe_namespace(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        name = meta["name"]
        labels = dict(meta.get("labels") or {})
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            changed = self.state.namespaces.pop(name, None) is not None
        else:
            changed = self.state.namespaces.get(name) != labels
            self.state.namespaces[name] = labels
        if changed and self.bundle_inputs_listed:
            self._enqueue_bundles()

    def bundle_target_seen(
        self, kind: str, event_type: str | None, body: dict[str, Any], *, ours: bool = False
    ) -> None:
        """A ConfigMap or Secret carrying the Bundle label (from its watch, or as we just wrote it: ``ours``)."""
        meta = body["metadata"]
        key = (kind, meta["namespace"], meta["name"])
        bundle = (meta.get("labels") or {}).get(resources.BUNDLE_LABEL, "")
        known = self.state.bundle_targets.get(key)
        if event_type == "DELETED":
            self.state.bundle_targets.pop(key, None)
        else:
            rv = meta["resourceVersion"]
            if known is not None and not newer_or_equal(rv, known.resource_version):
                return
            if known is not None and known.resource_version == rv:
                return  # our own write, recorded when it was answered
            digests = {k: content_digest(v) for k, v in resources.target_texts(kind, body).items()}
            self.state.bundle_targets[key] = BundleTarget(rv, bundle, resources.owner_uids(body), digests)
        if not ours and self.bundle_inputs_listed and bundle in self.state.bundles:
            self.queue.add((Kind.BUNDLE, "", bundle))  # changed or deleted by someone else: put right

    def _namespaces_listed(self, present: set[tuple[str, str]]) -> None:
        for gone in [ns for ns in self.state.namespaces if ("", ns) not in present]:
            del self.state.namespaces[gone]
        self._bundle_list_arrived("Namespace")

    def _targets_listed(self, kind: str, namespace: str | None, present: set[tuple[str, str]]) -> None:
        """After a (re)list of one kind of target in one watched namespace (None: all): forget those deleted
        while the watch was away."""
        for key in list(self.state.bundle_targets):
            if key[0] == kind and (namespace is None or key[1] == namespace) and (key[1], key[2]) not in present:
                del self.state.bundle_targets[key]
        self._bundle_list_arrived(f"{kind}/{namespace or ''}")

    def _bundle_list_arrived(self, what: str) -> None:
        self._bundle_lists.add(what)
        if self.bundle_inputs_listed:
            self._enqueue_bundles()

    def observe_pod_request(self, event_type: str, body: dict[str, Any]) -> None:
        """A PodCertificateRequest: kept (and queued) while it is unanswered and names a signer of certmint's."""
        self.events_seen += 1
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        signer = str((body.get("spec") or {}).get("signerName") or "")
        if (
            event_type == "DELETED"
            or not signer.startswith(f"{SIGNER_DOMAIN}/")
            or pod_request_is_final(body.get("status") or {})
        ):
            self.state.pod_requests.pop(key, None)
            self.state.pod_requests_answered.pop(key, None)
            return
        answered = self.state.pod_requests_answered.get(key)
        if answered is not None and newer_or_equal(answered, meta["resourceVersion"]):
            return  # older than our answer (its own event follows)
        self.state.pod_requests[key] = body
        self.queue.add((Kind.POD_REQUEST, *key))

    def _pod_requests_listed(self, present: set[tuple[str, str]]) -> None:
        for key in set(self.state.pod_requests) - present:
            self.state.pod_requests.pop(key, None)

    async def watch_pod_requests(self) -> None:
        """Watch PodCertificateRequests until cancelled, where the API server serves them (else log once and
        return). Every signer's requests arrive (a field selector takes one signer name, and the kubelet sets no
        labels): those of other signers are dropped at once. Discovery is retried as the watch is: an operator that
        starts while the API server is out of reach (its Service name not yet resolvable, a control-plane restart)
        must still sign once it answers."""
        served = await until_answered(
            "discovery of podcertificaterequests", lambda: resources.pod_certificate_requests_served(self.api)
        )
        if not served:
            log.info(
                "the API server does not serve certificates.k8s.io/%s podcertificaterequests (feature gate "
                "PodCertificateRequest off): no pod certificates are signed",
                resources.PCR_VERSION,
            )
            return
        await ListWatch(
            self.api,
            resources.pod_certificate_requests_path(),
            label_selector="",
            on_event=self.observe_pod_request,
            on_listed=self._pod_requests_listed,
        ).run()

    async def watch_bundle_inputs(self) -> None:
        """Watch namespaces' labels and the objects Bundles write (ConfigMaps and Secrets with the Bundle label)
        until cancelled."""
        namespaces = self.settings.watch_namespaces or (None,)
        watches = [
            ListWatch(
                self.api,
                "/api/v1/namespaces",
                label_selector="",
                on_event=self.observe_namespace,
                on_listed=self._namespaces_listed,
                metadata_only=True,
            )
        ]
        watches += [
            ListWatch(
                self.api,
                resources.target_path(kind, ns),
                label_selector=resources.BUNDLE_LABEL,
                on_event=functools.partial(self.bundle_target_seen, kind),
                on_listed=functools.partial(self._targets_listed, kind, ns),
            )
            for kind in resources.TARGET_KINDS
            for ns in namespaces
        ]
        await asyncio.gather(*(w.run() for w in watches))


def pod_request_is_final(status: dict[str, Any]) -> bool:
    """Issued, Denied or Failed: the API server refuses any further status change."""
    return any(c.get("type") in ("Issued", "Denied", "Failed") for c in status.get("conditions") or [])


def request_is_final(status: dict[str, Any]) -> bool:
    """Signed, invalid, or finished as denied or failed. A Denied condition alone (a person's ``certmint deny``)
    is not finished yet: the operator still writes its Ready=False (reason Denied)."""
    for c in status.get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Ready", "InvalidRequest"):
            return True
        if c.get("type") == "Ready" and c.get("reason") in (DENIED_REASON, FAILED):
            return True
    return False
