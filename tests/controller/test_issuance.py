"""A Certificate's first issuance, its renewal on the timer, and a restart that changes nothing.

What is asserted is what a user or the API sees: the Certificate's status, the Secret, the
CertificateRequest, the Events, and the number of API requests by verb and resource.
"""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509

from certmint.core import decisions
from certmint.core.conditions import parse_rfc3339
from certmint.pki.inspect import load_pem_chain
from certmint.pki.keys import load_private_key, public_key_matches
from tests.controller.conftest import CA_ISSUER, SELF_SIGNED
from tests.controller.harness import (
    ISSUANCE_REQUESTS,
    NAMESPACE,
    OPERATOR_NAMESPACE,
    REISSUE_REQUESTS,
    Harness,
    condition,
)
from tests.integration.builders import certificate, cluster_issuer
from tests.unit.builders import CAPair


@pytest.mark.parametrize("issuer", [SELF_SIGNED, CA_ISSUER])
async def test_first_issuance(harness: Harness, root_ca: CAPair, issuer: str) -> None:
    mark = harness.mark()
    created = harness.create(certificate("web", NAMESPACE, issuer_name=issuer, duration="24h"))
    await harness.settle()

    assert harness.since(mark) == ISSUANCE_REQUESTS
    cert = harness.certificate("web")
    status = cert["status"]
    ready, issuing = condition(cert, "Ready"), condition(cert, "Issuing")
    assert (ready["status"], ready["reason"]) == ("True", "Issued")
    assert (issuing["status"], issuing["reason"]) == ("False", "Issued")
    assert "reason: Secret web-tls does not exist" in issuing["message"]
    assert status["revision"] == 1 and status["observedGeneration"] == 1
    not_before, not_after = parse_rfc3339(status["notBefore"]), parse_rfc3339(status["notAfter"])
    assert not_after - harness.clock.now() == datetime.timedelta(hours=24)
    renewal = parse_rfc3339(status["renewalTime"])
    assert not_before < renewal < not_after

    secret = harness.secret("web-tls")
    assert secret is not None and secret["type"] == "kubernetes.io/tls"
    data = harness.secret_data("web-tls")
    leaf = load_pem_chain(data["tls.crt"])[0]
    assert public_key_matches(load_private_key(data["tls.key"]), leaf)
    assert format(leaf.serial_number, "x").rjust(len(status["serialNumber"]), "0") == status["serialNumber"]
    if issuer == SELF_SIGNED:
        assert load_pem_chain(data["ca.crt"])[0] == leaf
    else:
        assert load_pem_chain(data["ca.crt"]) == [root_ca.cert]
        assert leaf.issuer == root_ca.cert.subject
    labels, annotations = secret["metadata"]["labels"], secret["metadata"]["annotations"]
    assert labels == {decisions.CERTIFICATE_NAME: "web"}
    assert annotations[decisions.CERTIFICATE_UID] == created["metadata"]["uid"]
    assert annotations[decisions.ISSUER_NAME] == issuer
    assert annotations[decisions.ISSUER_KIND] == "ClusterIssuer"
    assert annotations[decisions.SERIAL_NUMBER] == status["serialNumber"]
    assert annotations[decisions.REVISION] == "1"
    assert "ownerReferences" not in secret["metadata"]  # secretDeletionPolicy defaults to Retain

    (request,) = harness.requests()
    assert request["metadata"]["name"] == "web-1"
    assert request["metadata"]["labels"] == {decisions.CERTIFICATE_NAME: "web"}
    assert [o["uid"] for o in request["metadata"]["ownerReferences"]] == [created["metadata"]["uid"]]
    assert condition(request, "Approved")["status"] == "True"
    assert condition(request, "Ready")["status"] == "True"
    assert request["status"]["certificate"].encode() == data["tls.crt"]

    (event,) = harness.events("web")
    assert (event["type"], event["reason"]) == ("Normal", "Issued")
    assert status["serialNumber"] in event["message"]


async def test_secret_deletion_policy_delete_owner_references_the_secret(harness: Harness) -> None:
    created = harness.create(certificate("web", NAMESPACE, issuer_name=CA_ISSUER, secretDeletionPolicy="Delete"))
    await harness.settle()
    secret = harness.secret("web-tls")
    assert secret is not None
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Certificate", "web", created["metadata"]["uid"])


async def test_secret_template_labels_and_annotations_reach_the_secret(harness: Harness) -> None:
    template = {"labels": {"team": "a"}, "annotations": {"reloader/watch": "true"}}
    harness.create(certificate("web", NAMESPACE, issuer_name=CA_ISSUER, secretTemplate=template))
    await harness.settle()
    meta = (harness.secret("web-tls") or {})["metadata"]
    assert meta["labels"]["team"] == "a" and meta["annotations"]["reloader/watch"] == "true"


async def test_renewal_on_the_timer_reads_nothing_and_costs_one_issuance(harness: Harness) -> None:
    first = await harness.issued("web", issuer=CA_ISSUER)
    renewal = parse_rfc3339(first["renewalTime"])

    mark, logged = harness.mark(), len(harness.api.log)
    await harness.advance_to(renewal - datetime.timedelta(seconds=1))
    assert harness.since(mark, reads=False) == {}  # not before its time
    assert harness.certificate("web")["status"]["serialNumber"] == first["serialNumber"]

    await harness.advance(2)
    assert harness.since(mark, reads=False) == REISSUE_REQUESTS
    # The only reads meanwhile are the CA issuer's re-checks of its CA Secret: the Certificate's Secret is not read.
    reads = {r for r in harness.api.log[logged:] if r[0] in ("get", "list")}
    assert reads == {("get", "secrets", "internal-ca-key-pair")}
    cert = harness.certificate("web")
    status = cert["status"]
    assert status["serialNumber"] != first["serialNumber"] and status["revision"] == 2
    assert (condition(cert, "Ready")["status"], condition(cert, "Ready")["reason"]) == ("True", "Renewed")
    assert "reason: renewal time" in condition(cert, "Issuing")["message"]
    assert parse_rfc3339(status["renewalTime"]) > renewal
    assert harness.event_reasons("web") == ["Issued", "Renewed"]
    assert [r["metadata"]["name"] for r in harness.requests()] == ["web-1", "web-2"]
    data = harness.secret_data("web-tls")
    assert public_key_matches(load_private_key(data["tls.key"]), load_pem_chain(data["tls.crt"])[0])
    assert (harness.secret("web-tls") or {})["metadata"]["annotations"][decisions.REVISION] == "2"


async def test_renewals_keep_going_and_old_requests_are_pruned_to_the_history_limit(harness: Harness) -> None:
    await harness.issued("web", issuer=CA_ISSUER, revisionHistoryLimit=2)
    for revision in (2, 3, 4):
        renewal = parse_rfc3339(harness.certificate("web")["status"]["renewalTime"])
        await harness.advance_to(renewal + datetime.timedelta(seconds=1))
        assert harness.certificate("web")["status"]["revision"] == revision
    assert [r["metadata"]["name"] for r in harness.requests()] == ["web-3", "web-4"]


async def test_a_restart_reissues_nothing_and_rebuilds_the_renewal_timer(harness: Harness) -> None:
    first = await harness.issued("web", issuer=CA_ISSUER)
    mark = harness.mark()
    await harness.restart()
    assert harness.since(mark, reads=False) == {}
    assert harness.certificate("web")["status"] == first
    assert harness.event_reasons("web") == ["Issued"]

    await harness.advance_to(parse_rfc3339(first["renewalTime"]) + datetime.timedelta(seconds=1))
    assert harness.certificate("web")["status"]["revision"] == 2


async def test_an_operator_down_past_the_expiry_reissues_at_restart(harness: Harness) -> None:
    first = await harness.issued("web", issuer=CA_ISSUER)
    await harness.stop()
    harness.clock.t = parse_rfc3339(first["notAfter"]).timestamp() + 60
    await harness.restart()
    cert = harness.certificate("web")
    assert cert["status"]["revision"] == 2
    assert "expired at" in condition(cert, "Issuing")["message"]
    assert condition(cert, "Ready")["reason"] == "Issued"


async def test_a_deleted_certificate_leaves_its_secret_and_stops_its_timer(harness: Harness) -> None:
    first = await harness.issued("web", issuer=CA_ISSUER)
    harness.delete("Certificate", NAMESPACE, "web")
    await harness.settle()
    mark = harness.mark()
    await harness.advance_to(parse_rfc3339(first["renewalTime"]) + datetime.timedelta(seconds=1))
    assert harness.since(mark, reads=False) == {}
    assert harness.secret("web-tls") is not None  # Retain (and no garbage collector here in any case)


async def test_a_ca_with_name_constraints_signs_only_inside_them(harness: Harness) -> None:
    """cert-manager's nameConstraints (issue 17): the CA Certificate carries them, and certmint refuses a leaf outside
    them with the name and the CA, before a verifier would."""
    constraints = {"critical": True, "permitted": {"dnsDomains": [f"{NAMESPACE}.svc"]}}
    harness.create(
        certificate(
            "team-ca",
            OPERATOR_NAMESPACE,
            issuer_name=SELF_SIGNED,
            commonName="team CA",
            isCA=True,
            duration="720h",
            nameConstraints=constraints,
        )
    )
    await harness.settle()
    ca_data = harness.secret_data("team-ca-tls", OPERATOR_NAMESPACE)
    ext = load_pem_chain(ca_data["tls.crt"])[0].extensions.get_extension_for_class(x509.NameConstraints)
    assert ext.critical and [n.value for n in ext.value.permitted_subtrees or []] == [f"{NAMESPACE}.svc"]
    harness.create(cluster_issuer("team-ca", ca_secret="team-ca-tls"))
    await harness.settle()

    inside = await harness.issued("web", issuer="team-ca")  # web.<namespace>.svc
    assert inside["revision"] == 1
    harness.create(certificate("api", NAMESPACE, issuer_name="team-ca", dnsNames=["api.elsewhere.svc"]))
    await harness.settle()
    ready = condition(harness.certificate("api"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PolicyViolation")
    assert "'api.elsewhere.svc' is outside the name constraints of CA 'CN=team CA'" in ready["message"]
    assert harness.secret("api-tls") is None
