"""The operator names itself: its writes are recorded under the manager ``certmint``, not ``Python``.

The API server takes a managedFields ``manager`` from the request's User-Agent (the part before the
first "/"), so what an administrator sees in ``kubectl get -o yaml --show-managed-fields`` and in the
audit log is what the operator sent.
"""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, certificate

pytestmark = pytest.mark.integration


def _managers(obj: dict[str, object] | client.V1ObjectMeta) -> set[tuple[str, str]]:
    """(manager, subresource) of every managedFields entry."""
    if isinstance(obj, client.V1ObjectMeta):
        entries = [(e.manager, e.subresource or "") for e in obj.managed_fields or []]
    else:
        meta = obj["metadata"]
        assert isinstance(meta, dict)
        entries = [(e["manager"], e.get("subresource", "")) for e in meta.get("managedFields") or []]
    return set(entries)


def test_writes_of_the_operator_are_managed_by_certmint(api: client.ApiClient, operator: OperatorProcess) -> None:
    cm = Certmint(api)
    ns, issuer = cm.namespace_and_issuer("ua")
    cm.create(certificate("web", ns, issuer_name=issuer))
    cert = cm.wait_ready("Certificate", "web", ns)
    secret = cm.secret("web-tls", ns)
    assert secret is not None

    status_managers = {m for m, sub in _managers(cert) if sub == "status"}
    assert status_managers == {"certmint"}, _managers(cert)  # the operator is the only writer of status
    assert {m for m, _ in _managers(secret.metadata)} == {"certmint"}
    request = cm.custom.list_namespaced_custom_object(
        "certmint.dev", "v1alpha1", ns, "certificaterequests", label_selector="certmint.dev/certificate-name=web"
    )["items"][0]
    assert {m for m, _ in _managers(request)} == {"certmint"}
