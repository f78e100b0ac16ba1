"""Bad input is refused by the API server at admission, with a message naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.builders import GROUP, VERSION
from tests.integration.invalid_specs import INVALID_OBJECTS, NEVER_IN_ERRORS, VALID_OBJECTS

pytestmark = pytest.mark.integration


def _create(api: client.ApiClient, obj: dict[str, Any], dry_run: str | None = None) -> None:
    custom = client.CustomObjectsApi(api)
    plural = obj["kind"].lower() + "s"
    ns = obj["metadata"].get("namespace")
    if ns:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, obj, dry_run=dry_run)
    else:
        custom.create_cluster_custom_object(GROUP, VERSION, plural, obj, dry_run=dry_run)


def test_there_are_at_least_fifteen_distinct_bad_inputs() -> None:
    assert len({case_id for case_id, _, _ in INVALID_OBJECTS}) >= 15


@pytest.mark.parametrize(
    ("obj", "expected"), [(o, m) for _, o, m in INVALID_OBJECTS], ids=[i for i, _, _ in INVALID_OBJECTS]
)
def test_invalid_object_is_refused(api: client.ApiClient, crds: None, obj: dict[str, Any], expected: str) -> None:
    with pytest.raises(ApiException) as err:
        _create(api, obj)
    assert err.value.status == 422, err.value.body
    assert expected in err.value.body, err.value.body
    # A CEL rule that failed at run time (e.g. "type conversion error ... evaluating rule") hides the defect.
    assert not [w for w in (*NEVER_IN_ERRORS, "type conversion error") if w in err.value.body], err.value.body


@pytest.mark.parametrize("obj", [o for _, o in VALID_OBJECTS], ids=[i for i, _ in VALID_OBJECTS])
def test_valid_baseline_is_accepted(api: client.ApiClient, crds: None, obj: dict[str, Any]) -> None:
    # Server-side dry run: every admission rule runs, nothing is stored for an operator to act on.
    _create(api, obj, dry_run="All")


def test_a_valid_minimal_certificate_is_accepted_and_defaulted(api: client.ApiClient, crds: None) -> None:
    obj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Certificate",
        "metadata": {"name": "defaults-probe", "namespace": "default"},
        "spec": {
            "secretName": "defaults-probe-tls",
            "issuerRef": {"name": "x"},
            "dnsNames": ["a.example.test"],
        },
    }
    created = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, "default", "certificates", obj
    )
    spec = created["spec"]
    assert spec["duration"] == "2160h"
    assert spec["issuerRef"]["kind"] == "Issuer"
    assert spec["privateKey"]["algorithm"] == "ECDSA"
    assert spec["privateKey"]["rotationPolicy"] == "Always"
    assert spec["revisionHistoryLimit"] == 3
    assert spec["secretDeletionPolicy"] == "Retain"
    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, "default", "certificates", "defaults-probe"
    )
