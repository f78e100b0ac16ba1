"""The operator's own Secret watch against the real API server: selection, and deletions missed while away."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from certmint.kube.client import Credentials, KubeClient
from certmint.kube.resources import CERTIFICATE_NAME_LABEL, secret_path
from certmint.kube.watch import ListWatch
from tests.controlplane.cluster import ControlPlane

pytestmark = pytest.mark.integration


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.listed: list[set[tuple[str, str]]] = []
        self._changed = asyncio.Event()

    def on_event(self, kind: str, obj: dict[str, Any]) -> None:
        self.events.append((kind, obj["metadata"]["name"]))
        self._changed.set()

    def on_listed(self, present: set[tuple[str, str]]) -> None:
        self.listed.append(present)
        self._changed.set()

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(20):
            while not done():
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def kube(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    api = KubeClient(
        Credentials(server=control_plane.server, ca_data=control_plane.ca_pem, token=control_plane.tokens["admin"])
    )
    yield api
    await api.close()


async def _secret(api: KubeClient, ns: str, name: str, *, labelled: bool) -> None:
    labels = {CERTIFICATE_NAME_LABEL: name} if labelled else {}
    await api.create(secret_path(ns), {"metadata": {"name": name, "labels": labels}, "stringData": {"k": "v"}})


async def test_only_labelled_secrets_and_deletions_seen_after_a_relist(kube: KubeClient) -> None:
    ns = f"watch-{uuid.uuid4().hex[:6]}"
    await kube.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    await _secret(kube, ns, "a", labelled=True)
    await _secret(kube, ns, "b", labelled=False)

    rec = Recorder()
    watch = ListWatch(kube, secret_path(ns), CERTIFICATE_NAME_LABEL, rec.on_event, rec.on_listed, page_size=1)
    task = asyncio.create_task(watch.run())
    try:
        await rec.until(lambda: bool(rec.listed))
        assert rec.listed == [{(ns, "a")}]
        assert rec.events == [("ADDED", "a")]

        await _secret(kube, ns, "c", labelled=True)
        await kube.merge_patch(secret_path(ns, "b"), {"stringData": {"k": "changed"}})  # unlabelled: unseen
        await kube.merge_patch(secret_path(ns, "b"), {"metadata": {"labels": {CERTIFICATE_NAME_LABEL: "b"}}})
        await kube.delete(secret_path(ns, "a"))
        await rec.until(lambda: ("DELETED", "a") in rec.events)
        assert rec.events[1:] == [("ADDED", "c"), ("ADDED", "b"), ("DELETED", "a")]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    # While nobody watches, c goes away; the next list shows what is left, so the deletion is not missed.
    await kube.delete(secret_path(ns, "c"))
    rec2 = Recorder()
    task = asyncio.create_task(
        ListWatch(kube, secret_path(ns), CERTIFICATE_NAME_LABEL, rec2.on_event, rec2.on_listed).run()
    )
    try:
        await rec2.until(lambda: bool(rec2.listed))
        assert rec2.listed == [{(ns, "b")}]
    finally:
        task.cancel()
    await kube.delete(f"/api/v1/namespaces/{ns}")
