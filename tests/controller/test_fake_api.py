"""The in-memory API behaves as the API server does where the operator depends on it.

These pin the fake itself: a fake that let a stale write through or bumped a version on a no-op
would make the controller tests pass for the wrong reason.
"""

from __future__ import annotations

import asyncio

import pytest

from certmint.kube import resources
from certmint.kube.client import ApiError, ApiUnavailable
from tests.controller.fake_api import FakeKube, merge_patch
from tests.controller.harness import FakeClock
from tests.integration.builders import certificate

NS = "apps"
CERTS = resources.object_path("Certificate", NS)


def fake() -> FakeKube:
    return FakeKube(FakeClock())


async def test_create_sets_identity_and_versions_and_drops_a_custom_resource_status() -> None:
    api = fake()
    body = certificate("web", NS, issuer_name="ca")
    body["status"] = {"revision": 7}
    created = await api.create(CERTS, body)
    meta = created["metadata"]
    assert (meta["name"], meta["namespace"], meta["generation"]) == ("web", NS, 1)
    assert meta["uid"] and meta["creationTimestamp"] == "2030-01-01T12:00:00Z"
    assert "status" not in created
    secret = await api.create(resources.secret_path(NS), {"metadata": {"name": "s"}, "data": {}})
    assert "generation" not in secret["metadata"]
    assert int(secret["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    with pytest.raises(ApiError) as exc:
        await api.create(CERTS, certificate("web", NS, issuer_name="ca"))
    assert (exc.value.status, exc.value.reason) == (409, "AlreadyExists")


async def test_generate_name() -> None:
    api = fake()
    a = await api.create(CERTS, {"metadata": {"generateName": "web-"}, "spec": {}})
    b = await api.create(CERTS, {"metadata": {"generateName": "web-"}, "spec": {}})
    assert a["metadata"]["name"].startswith("web-") and a["metadata"]["name"] != b["metadata"]["name"]


async def test_merge_patch_conflicts_on_a_stale_resource_version_and_status_is_a_subresource() -> None:
    api = fake()
    created = await api.create(CERTS, certificate("web", NS, issuer_name="ca"))
    path = resources.object_path("Certificate", NS, "web")
    rv = created["metadata"]["resourceVersion"]
    status = await api.merge_patch(path + "/status", {"status": {"revision": 1}, "spec": {"secretName": "x"}})
    assert status["status"] == {"revision": 1}
    assert status["spec"]["secretName"] == "web-tls"  # /status changes only status
    assert status["metadata"]["generation"] == 1
    with pytest.raises(ApiError) as exc:
        await api.merge_patch(path, {"metadata": {"resourceVersion": rv}, "spec": {"duration": "1h"}})
    assert (exc.value.status, exc.value.reason) == (409, "Conflict")
    spec = await api.merge_patch(path, {"spec": {"duration": "1h"}, "status": {"revision": 9}})
    assert spec["metadata"]["generation"] == 2
    assert spec["status"] == {"revision": 1}  # the main resource does not change status
    same = await api.merge_patch(path, {"spec": {"duration": "1h"}})
    assert same["metadata"]["resourceVersion"] == spec["metadata"]["resourceVersion"]  # a no-op is not a change


async def test_missing_objects_are_404_and_deletes_do_not_collect_garbage() -> None:
    api = fake()
    path = resources.object_path("Certificate", NS, "web")
    assert await api.get(path) is None
    with pytest.raises(ApiError) as exc:
        await api.merge_patch(path, {"spec": {}})
    assert exc.value.not_found
    cert = await api.create(CERTS, certificate("web", NS, issuer_name="ca"))
    owned = {"name": "s", "ownerReferences": [{"uid": cert["metadata"]["uid"], "kind": "Certificate", "name": "web"}]}
    await api.create(resources.secret_path(NS), {"metadata": owned})
    assert await api.delete(path) is True
    assert await api.delete(path) is False
    assert await api.get(resources.secret_path(NS, "s")) is not None  # no garbage collector


async def test_label_selectors_and_paging() -> None:
    api = fake()
    for i, labels in enumerate([{"a": "1"}, {"a": "2"}, {}, {"a": "1", "b": "x"}]):
        await api.create(resources.secret_path(NS), {"metadata": {"name": f"s{i}", "labels": labels}})

    async def names(selector: str) -> list[str]:
        return [o["metadata"]["name"] for o in await api.list(resources.secret_path(NS), label_selector=selector)]

    assert await names("a=1") == ["s0", "s3"]
    assert await names("a") == ["s0", "s1", "s3"]
    assert await names("!a") == ["s2"]
    assert await names("a!=1") == ["s1", "s2"]
    assert await names("a==1,b") == ["s3"]
    pages = [p async for p in api.pages("/api/v1/secrets", page_size=3)]
    assert [len(p["items"]) for p in pages] == [3, 1]
    assert pages[-1]["metadata"]["resourceVersion"] == str(api.resource_version)


def test_merge_patch_follows_rfc_7386() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None, "e": 3}, "d": [2]}) == {
        "a": {"c": 2, "e": 3},
        "d": [2],
    }


async def test_a_filtered_watch_sees_objects_enter_and_leave_its_selection() -> None:
    api = fake()
    seen: list[tuple[str, str]] = []

    async def watch() -> None:
        params = {"labelSelector": "mine", "resourceVersion": "0"}
        async for event in api.stream(resources.secret_path(NS), params=params, read_timeout=1):
            seen.append((event["type"], event["object"]["metadata"]["name"]))

    task = asyncio.create_task(watch())
    await api.create(resources.secret_path(NS), {"metadata": {"name": "s", "labels": {"mine": ""}}})
    await api.create(resources.secret_path(NS), {"metadata": {"name": "other"}})
    await api.merge_patch(resources.secret_path(NS, "s"), {"data": {"k": "dg=="}})
    await api.merge_patch(resources.secret_path(NS, "s"), {"metadata": {"labels": {"mine": None}}})
    await api.merge_patch(resources.secret_path(NS, "other"), {"metadata": {"labels": {"mine": "y"}}})
    await api.delete(resources.secret_path(NS, "other"))
    for _ in range(100):  # the watch task runs when this one yields
        await asyncio.sleep(0)
        if api.watches_caught_up():
            break
    task.cancel()
    assert seen == [("ADDED", "s"), ("MODIFIED", "s"), ("DELETED", "s"), ("ADDED", "other"), ("DELETED", "other")]


async def test_injected_faults_are_raised_as_the_client_raises_them_and_counted() -> None:
    api = fake()
    api.fail("create", "secrets", status=422, message="bad label")
    api.fail("get", "secrets", name="s", unavailable=True)
    with pytest.raises(ApiError) as exc:
        await api.create(resources.secret_path(NS), {"metadata": {"name": "s"}})
    assert (exc.value.status, exc.value.reason, exc.value.message) == (422, "Invalid", "bad label")
    await api.create(resources.secret_path(NS), {"metadata": {"name": "s"}})  # only the next one failed
    with pytest.raises(ApiUnavailable):
        await api.get(resources.secret_path(NS, "s"))
    assert not api.health.available
    assert await api.get(resources.secret_path(NS, "s")) is not None
    assert api.health.available
    assert api.requests[("create", "secrets")] == 2 and api.requests[("get", "secrets")] == 2
