"""An in-memory Kubernetes API behind the operator's own client class, for the controller unit tier.

:class:`FakeKube` subclasses :class:`certmint.kube.client.KubeClient` and replaces only its two
funnels, ``request`` (every get, list, page, create, merge patch and delete goes through it) and
``stream`` (watches), so the operator's code above them — ``kube.resources``, ``kube.watch``, the
reconcilers — runs unchanged. Requests are counted by the inherited counter exactly as the real
client counts them (``requests[(verb, resource)]`` and ``on_request``).

What it models, as the API server does it:

- objects keyed by API path; ``metadata.resourceVersion`` from one global counter (a string),
  ``uid``, ``creationTimestamp`` (from the injected clock), ``generation`` for certmint's custom
  resources (1 at creation, +1 when anything but metadata and status changes; core objects have none),
  ``metadata.generateName``;
- create: 409 AlreadyExists when the name is taken; the status of a custom resource is dropped (the
  status subresource is enabled for all of them);
- merge patch (RFC 7386: ``null`` deletes a key): 409 Conflict when the patch carries a
  ``metadata.resourceVersion`` other than the object's; on ``.../status`` only ``status`` changes, on the
  main resource everything but ``status``; a patch that changes nothing keeps the resourceVersion and
  makes no watch event;
- 404 NotFound for a missing object (get, patch, delete);
- list with ``labelSelector`` (``k``, ``!k``, ``k=v``, ``k==v``, ``k!=v``, comma-separated, all must hold),
  ``limit``/``continue`` paging, and the list's ``metadata.resourceVersion``;
- watch (``stream``) from a resourceVersion with a label selector: an object that starts matching
  arrives as ADDED, one that stops matching as DELETED, as the API server's filtered watch does;
- discovery of a group version (``GET /apis/<group>/<version>``): an APIResourceList of what ``served``
  names for it (by default certificates.k8s.io/v1beta1 with PodCertificateRequests and ClusterTrustBundles,
  as Kubernetes 1.36 with their gates on), else 404;
- DELETE removes the object at once: there is no garbage collector (owner references are not
  followed, as on an API server without kube-controller-manager) and no finalizers.

Not modelled: admission (CRD schema defaults, CEL rules), strategic merge or server-side apply, RBAC.
The integration tier tests those against a real API server.

Fault injection: :meth:`FakeKube.fail` makes the next ``times`` requests matching a verb, a resource
(as the client counts it, e.g. ``secrets`` or ``certificates/status``) and optionally a name fail with
an :class:`ApiError` of the given HTTP status or with :class:`ApiUnavailable`, raised the way the real
client raises them. :meth:`FakeKube.before` runs a callback just before a matching request is served
(to change the store under a reconcile in progress).
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from certmint.kube.client import (
    JSON,
    ApiError,
    ApiUnavailable,
    KubeClient,
    _api_error,
    _resource_of,
    unavailable_status,
)

CUSTOM_GROUP_PREFIX = "/apis/certmint.dev/"
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_REASONS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 422: "Invalid", 500: "InternalError"}


@dataclass(frozen=True)
class Target:
    """What an API path names: a collection (``name`` None), an object, or an object's subresource."""

    prefix: str  # "/api/v1" or "/apis/<group>/<version>"
    namespace: str | None
    resource: str  # plural, e.g. "secrets"
    name: str | None
    subresource: str | None

    @property
    def key(self) -> tuple[str, str, str, str]:
        assert self.name is not None
        return (self.prefix, self.resource, self.namespace or "", self.name)

    @property
    def custom(self) -> bool:
        return self.prefix.startswith(CUSTOM_GROUP_PREFIX)


def parse_path(path: str) -> Target:
    parts = [p for p in path.split("?", maxsplit=1)[0].split("/") if p]
    if parts[0] == "api":
        prefix, rest = "/" + "/".join(parts[:2]), parts[2:]
    else:
        prefix, rest = "/" + "/".join(parts[:3]), parts[3:]
    namespace = None
    if rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    return Target(
        prefix,
        namespace,
        rest[0],
        rest[1] if len(rest) > 1 else None,
        rest[2] if len(rest) > 2 else None,
    )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def selector_matches(selector: str | None, labels: Mapping[str, str]) -> bool:
    """Equality-based label selectors as the API server reads them (set-based ones are not used by certmint)."""
    if not selector:
        return True
    for term in (t.strip() for t in selector.split(",")):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def labels_of(obj: JSON | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("labels") or {})


@dataclass(frozen=True)
class Change:
    """One entry of the store's history: what a watch of everything would have seen (object after the change)."""

    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    target: Target
    before: JSON | None
    after: JSON  # for DELETED: the object as deleted


@dataclass
class Fault:
    verb: str
    resource: str
    name: str | None
    times: int
    status: int
    unavailable: bool
    message: str

    def matches(self, verb: str, resource: str, name: str | None) -> bool:
        return self.times > 0 and (verb, resource) == (self.verb, self.resource) and self.name in (None, name)


@dataclass
class _Hook:
    verb: str
    resource: str
    name: str | None
    callback: Callable[[], None]


@dataclass
class _Watcher:
    cursor: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: bool = False


class FakeKube(KubeClient):
    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self._clock = clock
        self.objects: dict[tuple[str, str, str, str], JSON] = {}
        self.history: list[Change] = []
        self._rv = 0
        self._uids = 0
        self._generated = 0
        self._faults: list[Fault] = []
        self._hooks: list[_Hook] = []
        self._watchers: list[_Watcher] = []
        self.log: list[tuple[str, str, str | None]] = []  # (verb, resource, name) of every request, in order
        # Discovery: group version path → the resources it serves.
        self.served: dict[str, set[str]] = {
            "/apis/certificates.k8s.io/v1beta1": {"podcertificaterequests", "clustertrustbundles"}
        }

    # -- test controls ------------------------------------------------------------------------------------

    def fail(
        self,
        verb: str,
        resource: str,
        *,
        name: str | None = None,
        status: int = 500,
        times: int = 1,
        unavailable: bool = False,
        message: str = "injected failure",
    ) -> Fault:
        """The next ``times`` matching requests fail: ApiUnavailable when ``unavailable`` or ``status`` is one the
        client treats as unavailability (429, 502-504), else ApiError(status)."""
        fault = Fault(verb, resource, name, times, status, unavailable, message)
        self._faults.append(fault)
        return fault

    def before(self, verb: str, resource: str, callback: Callable[[], None], *, name: str | None = None) -> None:
        """Run ``callback`` once, just before the next matching request is served."""
        self._hooks.append(_Hook(verb, resource, name, callback))

    def writes(self) -> dict[tuple[str, str], int]:
        """Requests other than get, list and watch, by (verb, resource)."""
        return {k: n for k, n in self.requests.items() if k[0] not in ("get", "list", "watch") and n}

    # -- direct store access for tests (no request is counted) ---------------------------------------------

    def put(self, path: str, body: JSON) -> JSON:
        """Create an object as a user would (kubectl create): returns what the API server stored."""
        return self._create(parse_path(path), copy.deepcopy(body))

    def edit(self, path: str, patch: JSON, *, subresource: str | None = None) -> JSON:
        """Merge-patch an object as a user would (kubectl patch --type merge)."""
        target = parse_path(path)
        if subresource:
            target = Target(target.prefix, target.namespace, target.resource, target.name, subresource)
        return self._patch(target, patch)

    def remove(self, path: str) -> None:
        self._delete(parse_path(path))

    def peek(self, path: str) -> JSON | None:
        """The stored object (a copy), or None."""
        target = parse_path(path)
        obj = self.objects.get(target.key)
        return copy.deepcopy(obj) if obj is not None else None

    def items(self, path: str, *, label_selector: str | None = None) -> list[JSON]:
        """The stored objects of a collection path (a copy), in creation order."""
        return [copy.deepcopy(o) for o in self._select(parse_path(path), label_selector)]

    @property
    def resource_version(self) -> int:
        return self._rv

    def watches_caught_up(self) -> bool:
        """Every open watch has handed every change to its consumer and waits for the next one."""
        return all(w.waiting and w.cursor >= len(self.history) for w in self._watchers)

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    # -- the client's funnels ---------------------------------------------------------------------------

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
        verb = verb or _VERBS[method]
        self._count(verb, path)
        await asyncio.sleep(0)  # a request is I/O: other tasks (watch deliveries, workers) run meanwhile
        if method == "GET" and _resource_of(path) == "discovery":  # /apis/<group>/<version>, /api/v1
            self._injected(verb, path, None)
            self.health.succeeded()
            return self._discover(path)
        target = parse_path(path)
        self._injected(verb, path, target.name)
        self.health.succeeded()
        params = params or {}
        if verb == "list":
            listed = self._list(target, params)
            if _metadata_only(accept):
                listed["items"] = [partial_metadata(item) for item in listed["items"]]
            return listed
        if method == "GET":
            return copy.deepcopy(self._get(target))
        if method == "POST":
            assert body is not None
            return self._create(target, copy.deepcopy(body))
        if method == "PATCH":
            assert body is not None and content_type == "application/merge-patch+json", content_type
            return self._patch(target, body)
        if method == "DELETE":
            return self._delete(target)
        raise NotImplementedError(f"{method} {path}")

    async def stream(
        self, path: str, *, params: Mapping[str, str], read_timeout: float, accept: str | None = None
    ) -> AsyncIterator[JSON]:
        """A watch from ``params['resourceVersion']``; it never ends on its own (no server timeout is modelled)."""
        self._count("watch", path)
        target = parse_path(path)
        self._injected("watch", path, None)
        self.health.succeeded()
        since = int(params.get("resourceVersion") or 0)
        selector = params.get("labelSelector")
        cursor = next((i for i, c in enumerate(self.history) if c.resource_version > since), len(self.history))
        watcher = _Watcher(cursor)
        self._watchers.append(watcher)
        try:
            while True:
                while watcher.cursor < len(self.history):
                    change = self.history[watcher.cursor]
                    watcher.cursor += 1
                    event = watch_event(change, target, selector)
                    if event is not None:
                        if _metadata_only(accept):
                            event = {**event, "object": partial_metadata(event["object"])}
                        yield event
                watcher.wake.clear()
                watcher.waiting = True
                try:
                    await watcher.wake.wait()
                finally:
                    watcher.waiting = False
        finally:
            self._watchers.remove(watcher)

    # -- the API server's behaviour ---------------------------------------------------------------------

    def _injected(self, verb: str, path: str, name: str | None) -> None:
        resource = _resource_of(path)
        self.log.append((verb, resource, name))
        for hook in list(self._hooks):
            if (hook.verb, hook.resource) == (verb, resource) and hook.name in (None, name):
                self._hooks.remove(hook)
                hook.callback()
        for fault in self._faults:
            if fault.matches(verb, resource, name):
                fault.times -= 1
                if fault.unavailable or unavailable_status(fault.status):
                    # As KubeClient._refused / _unreachable: the outage is recorded in health, then raised.
                    text = f"{fault.status} {fault.message}" if not fault.unavailable else f"OSError: {fault.message}"
                    self.health.failed(text, sent_at=self.health.now())
                    if fault.unavailable:
                        raise ApiUnavailable(f"API server unreachable: {text}")
                    raise ApiUnavailable(f"API server unavailable: {text}", status=fault.status)
                raise _status_error(fault.status, _REASONS.get(fault.status, ""), fault.message)

    def _discover(self, path: str) -> JSON:
        served = self.served.get(path)
        if served is None:
            raise _status_error(404, "NotFound", f"the server could not find the requested resource ({path})")
        resources = [{"name": name, "namespaced": name != "clustertrustbundles"} for name in sorted(served)]
        group_version = path.removeprefix("/apis/").removeprefix("/api/")
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _now(self) -> str:
        return datetime.datetime.fromtimestamp(self._clock(), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _record(self, type_: str, target: Target, before: JSON | None, after: JSON) -> None:
        self.history.append(Change(self._rv, type_, target, copy.deepcopy(before), copy.deepcopy(after)))
        for w in self._watchers:
            w.wake.set()

    def _get(self, target: Target) -> JSON:
        obj = self.objects.get(target.key)
        if obj is None:
            raise _not_found(target)
        return obj

    def _select(self, target: Target, selector: str | None) -> list[JSON]:
        return [
            obj
            for (prefix, resource, namespace, _), obj in self.objects.items()
            if (prefix, resource) == (target.prefix, target.resource)
            and (target.namespace is None or namespace == target.namespace)
            and selector_matches(selector, labels_of(obj))
        ]

    def _list(self, target: Target, params: Mapping[str, str]) -> JSON:
        selected = self._select(target, params.get("labelSelector"))
        start = int(params.get("continue") or 0)
        limit = int(params.get("limit") or 0) or len(selected)
        page = selected[start : start + limit]
        meta: JSON = {"resourceVersion": str(self._rv)}
        if start + limit < len(selected):
            meta["continue"] = str(start + limit)
        return {"kind": "List", "apiVersion": "v1", "metadata": meta, "items": copy.deepcopy(page)}

    def _create(self, target: Target, body: JSON) -> JSON:
        meta = body.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            if not meta.get("generateName"):
                raise _status_error(422, "Invalid", f"{target.resource}: metadata.name: Required value")
            self._generated += 1
            name = meta["name"] = f"{meta['generateName']}{self._generated:05x}"
        if target.namespace is not None:
            meta["namespace"] = target.namespace
        named = Target(target.prefix, target.namespace, target.resource, name, None)
        if named.key in self.objects:
            raise _status_error(
                409, "AlreadyExists", f'{target.resource} "{name}" already exists', name=name, kind=target.resource
            )
        self._uids += 1
        meta["uid"] = f"00000000-0000-4000-8000-{self._uids:012d}"
        meta["creationTimestamp"] = self._now()
        meta["resourceVersion"] = self._next_rv()
        if target.custom:
            meta["generation"] = 1
            body.pop("status", None)  # the status subresource: status is written through /status only
        self.objects[named.key] = body
        self._record("ADDED", named, None, body)
        return copy.deepcopy(body)

    def _patch(self, target: Target, patch: JSON) -> JSON:
        current = self._get(target)
        wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted_rv is not None and wanted_rv != current["metadata"]["resourceVersion"]:
            raise _status_error(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {target.resource} "{target.name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                name=target.name,
                kind=target.resource,
            )
        if target.subresource == "status":
            updated = copy.deepcopy(current)
            status = merge_patch(current.get("status"), patch.get("status"))
            if status:
                updated["status"] = status
            else:
                updated.pop("status", None)
        else:
            updated = merge_patch(current, {k: v for k, v in patch.items() if k != "status"})
            updated["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            for fixed in ("uid", "name", "namespace", "creationTimestamp", "generation"):
                if fixed in current["metadata"]:
                    updated["metadata"][fixed] = current["metadata"][fixed]
            if target.custom and _spec_part(updated) != _spec_part(current):
                updated["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        if updated == current:
            return copy.deepcopy(current)  # no change: no new resourceVersion, no watch event
        updated["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[target.key] = updated
        self._record("MODIFIED", target, current, updated)
        return copy.deepcopy(updated)

    def _delete(self, target: Target) -> JSON:
        current = self.objects.pop(target.key, None)
        if current is None:
            raise _not_found(target)
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = self._next_rv()
        self._record("DELETED", target, current, gone)
        return {"kind": "Status", "apiVersion": "v1", "status": "Success"}


def _metadata_only(accept: str | None) -> bool:
    return bool(accept) and accept.split(",")[0].startswith("application/json;as=PartialObjectMetadata")


def partial_metadata(obj: JSON) -> JSON:
    """What the API server sends for an object when asked for its metadata only (PartialObjectMetadata)."""
    return {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": copy.deepcopy(obj["metadata"])}


def watch_event(change: Change, watched: Target, selector: str | None) -> JSON | None:
    """The event a watch of ``watched`` (a collection) with ``selector`` sees for ``change``, or None."""
    target = change.target
    if (target.prefix, target.resource) != (watched.prefix, watched.resource):
        return None
    if watched.namespace is not None and target.namespace != watched.namespace:
        return None
    was = change.before is not None and selector_matches(selector, labels_of(change.before))
    now = change.type != "DELETED" and selector_matches(selector, labels_of(change.after))
    if was and now:
        type_ = "MODIFIED"
    elif now:
        type_ = "ADDED"
    elif was:
        type_ = "DELETED"  # deleted, or no longer selected
    else:
        return None
    return {"type": type_, "object": copy.deepcopy(change.after)}


def _spec_part(obj: JSON) -> JSON:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _status_error(
    status: int, reason: str, message: str, *, name: str | None = None, kind: str | None = None
) -> ApiError:
    """The ApiError the real client makes of the API server's Status body."""
    body: JSON = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason}
    if name is not None:
        body["details"] = {"name": name, "kind": kind}
    body["code"] = status
    return _api_error(status, json.dumps(body).encode())


def _not_found(target: Target) -> ApiError:
    return _status_error(
        404, "NotFound", f'{target.resource} "{target.name}" not found', name=target.name, kind=target.resource
    )
