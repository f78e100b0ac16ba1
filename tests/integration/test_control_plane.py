"""Proof that the integration tier talks to a real control plane: admission, CEL, watches, RBAC, GC."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.controlplane.cluster import ControlPlane
from tests.integration.conftest import api_for
from tests.integration.kubeutil import wait_for

pytestmark = pytest.mark.integration

GROUP = "smoke.certmint.dev"

SMOKE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer", "default": 3},
                                    "min": {"type": "integer"},
                                    "max": {"type": "integer"},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
                                        "message": "spec.min must not exceed spec.max",
                                    }
                                ],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def _widget(name: str, **spec: int) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


@pytest.fixture(scope="module")
def widgets(api: client.ApiClient) -> client.CustomObjectsApi:
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(SMOKE_CRD)
    wait_for(
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in (ext.read_custom_resource_definition(f"widgets.{GROUP}").status.conditions or [])
        ),
        "the smoke CRD to be established",
    )
    return client.CustomObjectsApi(api)


def test_server_version_is_the_pinned_release(api: client.ApiClient) -> None:
    version = client.VersionApi(api).get_code()
    print(f"\nkube-apiserver /version: {json.dumps(version.to_dict())}")
    assert version.git_version.startswith("v1.36."), version.git_version


def test_schema_default_is_applied(widgets: client.CustomObjectsApi) -> None:
    obj = widgets.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", _widget("defaulted"))
    assert obj["spec"]["size"] == 3


def test_cel_rule_refuses_invalid_object(widgets: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as err:
        widgets.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", _widget("bad", min=5, max=1))
    assert err.value.status == 422
    assert "spec.min must not exceed spec.max" in err.value.body


def test_watch_sees_a_change(widgets: client.CustomObjectsApi) -> None:
    created = widgets.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", _widget("watched"))
    seen: list[int] = []
    w = watch.Watch()

    def change() -> None:
        widgets.patch_namespaced_custom_object(GROUP, "v1", "default", "widgets", "watched", {"spec": {"size": 7}})

    timer = threading.Timer(0.2, change)
    timer.start()
    for event in w.stream(
        widgets.list_namespaced_custom_object,
        GROUP,
        "v1",
        "default",
        "widgets",
        field_selector="metadata.name=watched",
        resource_version=created["metadata"]["resourceVersion"],
        timeout_seconds=30,
    ):
        if event["type"] == "MODIFIED":
            seen.append(event["object"]["spec"]["size"])
            w.stop()
    timer.join()
    assert seen == [7]


def test_restricted_identity_is_refused_by_rbac(control_plane: ControlPlane, api: client.ApiClient) -> None:
    alice = client.CoreV1Api(api_for(control_plane, "alice"))
    with pytest.raises(ApiException) as err:
        alice.list_namespaced_secret("default")
    assert err.value.status == 403
    assert 'User "alice" cannot list resource "secrets"' in json.loads(err.value.body)["message"]

    # Grant exactly one verb and see it take effect: RBAC is really evaluated, not just denying everything.
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(
        "default",
        {
            "metadata": {"name": "alice-list-secrets"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        "default",
        {
            "metadata": {"name": "alice-list-secrets"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "alice-list-secrets",
            },
            "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    wait_for(lambda: _can_list(alice), "alice's new RoleBinding to take effect")
    with pytest.raises(ApiException) as err:
        alice.read_namespaced_secret("anything", "default")
    assert err.value.status == 403  # "get" was not granted


def _can_list(core: client.CoreV1Api) -> bool:
    try:
        core.list_namespaced_secret("default")
    except ApiException as e:
        if e.status == 403:
            return False
        raise
    return True


def test_owned_object_is_garbage_collected(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    name = f"owner-{uuid.uuid4().hex[:6]}"
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": name}})
    core.create_namespaced_config_map(
        "default",
        {
            "metadata": {
                "name": f"{name}-owned",
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": owner.metadata.uid}],
            }
        },
    )
    core.delete_namespaced_config_map(name, "default")
    wait_for(lambda: not _exists(core, f"{name}-owned"), "the owned ConfigMap to be garbage-collected", timeout=60)


def _exists(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespaced_config_map(name, "default")
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True
