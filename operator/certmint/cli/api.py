"""Every API call the CLI makes, over the operator's own thin client (:class:`certmint.kube.client.KubeClient`).

Reads return plain JSON dicts (``None`` for an object that does not exist) for :mod:`certmint.cli.render` to
judge. Two writes: :meth:`Cluster.request_renewal`, a merge patch of one annotation on a Certificate, nothing else
(the spec stays untouched; no status, no Secret); and :meth:`Cluster.write_request_conditions`, a person's
Approved or Denied on a CertificateRequest's status (``certmint approve``/``deny``), over the version read.

API failures become :class:`CliError` here, once: 401/403 and an unreachable server exit 3 with what was asked;
anything else the server refused exits 1 with its message.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import aiohttp

from certmint.cli.errors import CliError, Exit, Unreachable
from certmint.cli.kubeconfig import Connection
from certmint.core.decisions import CERTIFICATE_NAME, RENEW_REQUEST, certificate_label_value
from certmint.kube.client import JSON, USER_AGENT, ApiError, ApiHealth, ApiUnavailable, KubeClient
from certmint.kube.resources import GROUP, object_path, secret_path

T = TypeVar("T")

#: The chart's labels on the operator's Deployment (charts/certmint/templates/_helpers.tpl, deployment.yaml):
#: ``part-of`` stays "certmint" whatever nameOverride says.
OPERATOR_SELECTOR = "app.kubernetes.io/part-of=certmint,app.kubernetes.io/component=operator"
#: The operator's leader Lease, in its namespace (certmint.settings).
LEASE_NAME = "certmint-operator"
#: What ``convert --from-cluster`` lists: cert-manager's kinds and their resources, issuers first (the order to apply).
CERT_MANAGER_API = "cert-manager.io/v1"
CERT_MANAGER_RESOURCES = {
    "ClusterIssuer": "clusterissuers",
    "Issuer": "issuers",
    "Certificate": "certificates",
    "CertificateRequest": "certificaterequests",
}


class Cluster:
    """The API calls of the CLI's commands, each turning the API's failures into one line for the user."""

    def __init__(self, client: KubeClient, connection: Connection) -> None:
        self._client = client
        self.connection = connection

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except ApiUnavailable as e:
            server = self.connection.credentials.server
            if isinstance(e.__cause__, aiohttp.ClientConnectorCertificateError):
                reason = e.__cause__.certificate_error
                raise Unreachable(
                    f"the API server's certificate is not trusted with the kubeconfig's certificate authority "
                    f"(server {server}): {reason}"
                ) from None
            raise Unreachable(f"{e} (server {server})") from None
        except ApiError as e:
            if e.status in (401, 403):
                who = "not authenticated" if e.status == 401 else "forbidden"
                detail = e.message or e.reason
                raise CliError(f"cannot {what}: {who}: {detail}", Exit.API) from None
            raise CliError(f"cannot {what}: {e.message or e}", Exit.PROBLEM) from None

    async def get(self, what: str, path: str) -> JSON | None:
        return await self._call(f"read {what}", lambda: self._client.get(path))

    async def certificate(self, namespace: str, name: str) -> JSON | None:
        return await self.get(f"Certificate {namespace}/{name}", object_path("Certificate", namespace, name))

    async def issuer(self, kind: str, namespace: str, name: str) -> JSON | None:
        ns = namespace if kind == "Issuer" else None
        return await self.get(f"{kind} {name}", object_path(kind, ns, name))

    async def secret(self, namespace: str, name: str) -> JSON | None:
        return await self.get(f"Secret {namespace}/{name}", secret_path(namespace, name))

    async def certificates(self, namespace: str, selector: str | None) -> list[JSON]:
        where = f"Certificates in {namespace}" + (f" with labels {selector}" if selector else "")
        path = object_path("Certificate", namespace)
        return await self._call(f"list {where}", lambda: self._client.list(path, label_selector=selector))

    async def requests_of(self, namespace: str, certificate: str) -> list[JSON]:
        """The CertificateRequests labelled as the operator labels a Certificate's (render keeps the owned ones)."""
        path = object_path("CertificateRequest", namespace)
        selector = f"{CERTIFICATE_NAME}={certificate_label_value(certificate)}"
        return await self._call(
            f"list CertificateRequests in {namespace}", lambda: self._client.list(path, label_selector=selector)
        )

    async def events_of(self, namespace: str, kind: str, name: str) -> list[JSON]:
        path = f"/api/v1/namespaces/{namespace}/events"
        params = {"fieldSelector": f"involvedObject.kind={kind},involvedObject.name={name}"}

        async def call() -> list[JSON]:
            return list((await self._client.request("GET", path, params=params, verb="list")).get("items") or [])

        return await self._call(f"list Events in {namespace}", call)

    async def request_renewal(self, namespace: str, name: str, value: str) -> JSON | None:
        """Set the renew-request annotation to ``value`` (None: no such Certificate). The operator re-issues once for
        a value that its status.lastRenewRequest does not hold yet."""
        body: JSON = {"metadata": {"annotations": {RENEW_REQUEST: value}}}
        path = object_path("Certificate", namespace, name)

        async def call() -> JSON | None:
            try:
                return await self._client.merge_patch(path, body)
            except ApiError as e:
                if e.not_found:
                    return None
                raise

        return await self._call(f"annotate Certificate {namespace}/{name}", call)

    async def certificate_request(self, namespace: str, name: str) -> JSON | None:
        path = object_path("CertificateRequest", namespace, name)
        return await self.get(f"CertificateRequest {namespace}/{name}", path)

    async def write_request_conditions(
        self, namespace: str, name: str, resource_version: str, conditions: list[JSON]
    ) -> JSON | None:
        """Replace the request's status conditions, only over ``resource_version``; None when it changed since
        (409: read it again and decide again). Needs update (patch) on certificaterequests/status."""
        path = object_path("CertificateRequest", namespace, name) + "/status"
        body: JSON = {"metadata": {"resourceVersion": resource_version}, "status": {"conditions": conditions}}

        async def call() -> JSON | None:
            try:
                return await self._client.merge_patch(path, body)
            except ApiError as e:
                if e.conflict:
                    return None
                raise

        return await self._call(f"update the status of CertificateRequest {namespace}/{name}", call)

    async def served_resources(self) -> dict[str, list[str]]:
        """Discovery (readable by every authenticated user): each served version of certmint.dev → its resources."""
        group = await self.get(f"API group {GROUP}", f"/apis/{GROUP}")
        served: dict[str, list[str]] = {}
        for version in (group or {}).get("versions") or []:
            listing = await self.get(f"{GROUP}/{version['version']}", f"/apis/{version['groupVersion']}") or {}
            served[version["version"]] = sorted(
                r["name"] for r in listing.get("resources") or [] if "/" not in r["name"]
            )
        return served

    async def operator_deployments(self, namespace: str | None) -> list[JSON]:
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments" if namespace else "/apis/apps/v1/deployments"
        where = (
            f"Deployments in {namespace}" if namespace else "Deployments in all namespaces (or --operator-namespace)"
        )
        return await self._call(f"list {where}", lambda: self._client.list(path, label_selector=OPERATOR_SELECTOR))

    async def _list(self, what: str, path: str) -> list[JSON]:
        return await self._call(what, lambda: self._client.list(path))

    async def cert_manager_objects(self, namespace: str | None) -> tuple[list[JSON], list[str]]:
        """cert-manager's Issuers, Certificates and CertificateRequests of ``namespace`` (None: every namespace) and
        the ClusterIssuers, as the API serves them (status included), issuers first; and what could not be read.

        A cluster that does not serve cert-manager.io/v1 is one clear error. ClusterIssuers that a namespace's user
        may not list are a read error, not the end: that user can still convert the namespace."""
        discovery = await self.get(f"API group {CERT_MANAGER_API}", f"/apis/{CERT_MANAGER_API}")
        if discovery is None:
            raise CliError(
                f"this cluster does not serve {CERT_MANAGER_API} (cert-manager's CRDs are not installed): "
                "nothing to convert from it"
            )
        served = {r.get("name") for r in discovery.get("resources") or []}
        missing = [plural for plural in CERT_MANAGER_RESOURCES.values() if plural not in served]
        if missing:
            raise CliError(f"this cluster's {CERT_MANAGER_API} does not serve {', '.join(missing)}")
        objects: list[JSON] = []
        read_errors: list[str] = []
        for kind, plural in CERT_MANAGER_RESOURCES.items():
            if namespace is None or kind == "ClusterIssuer":
                path, where = f"/apis/{CERT_MANAGER_API}/{plural}", "all namespaces"
            else:
                path, where = f"/apis/{CERT_MANAGER_API}/namespaces/{namespace}/{plural}", f"namespace {namespace}"
            what = (
                f"list cert-manager {plural} in {where}" if kind != "ClusterIssuer" else f"list cert-manager {plural}"
            )
            try:
                listed = await self._list(what, path)
            except Unreachable:
                raise
            except CliError as e:
                if kind != "ClusterIssuer" or namespace is None or e.code != Exit.API:
                    raise
                read_errors.append(e.message)
                continue
            for item in sorted(listed, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])):
                objects.append({"apiVersion": CERT_MANAGER_API, "kind": kind, **item})
        return objects, read_errors

    async def lease(self, namespace: str) -> JSON | None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{LEASE_NAME}"
        return await self.get(f"Lease {namespace}/{LEASE_NAME}", path)


@asynccontextmanager
async def connect(connection: Connection, *, request_timeout: float) -> AsyncIterator[Cluster]:
    """A :class:`Cluster` over one client session, closed at the end."""
    client = KubeClient(
        connection.credentials,
        max_connections=4,
        timeout=request_timeout,
        # One-shot: an outage is reported by the command's own error, never logged by the health tracker.
        health=ApiHealth(min_outage_s=math.inf),
        user_agent=USER_AGENT.replace("certmint/", "certmint-cli/"),
    )
    try:
        yield Cluster(client, connection)
    finally:
        await client.close()
