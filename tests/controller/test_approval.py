"""Manual approval (an issuer's ``policy.approval: Manual``): the policy judges, then a person decides.

The person's decision is the CLI's own ``approve``/``deny`` (certmint.cli.main.decide) over the same in-memory API,
so the tier checks the two halves against each other: what the CLI writes is what the reconciler reads.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from certmint.cli.api import Cluster
from certmint.cli.errors import CliError
from certmint.cli.kubeconfig import Connection
from certmint.cli.main import decide
from certmint.kube import resources
from certmint.pki.inspect import load_pem_chain
from certmint.pki.keys import public_key_matches
from tests.controller.harness import NAMESPACE, Harness, condition
from tests.controller.test_requests import csr, request, submitted
from tests.integration.builders import certificate, cluster_issuer
from tests.unit.builders import NOW, CAPair, cached_key

MANUAL = "manual-ca"


@pytest.fixture
async def manual(harness: Harness) -> Harness:
    harness.create(
        cluster_issuer(
            MANUAL,
            ca_secret="internal-ca-key-pair",
            policy={"approval": "Manual", "allowedDNSNames": ["*.apps.svc"]},
        )
    )
    await harness.settle()
    return harness


async def person(harness: Harness, verb: str, name: str, **options: Any) -> dict[str, Any]:
    """``certmint approve|deny NAME`` as the CLI runs it, against the in-memory API; its report."""
    args = argparse.Namespace(
        command=verb,
        name=name,
        namespace=NAMESPACE,
        namespace_given=True,
        reason=options.get("reason"),
        message=options.get("message"),
    )
    cluster = Cluster(harness.api, Connection.__new__(Connection))
    report, code = await decide(cluster, args, NOW)
    assert code == 0
    return report


def stage_of(obj: dict[str, Any]) -> tuple[str, str]:
    ready = condition(obj, "Ready")
    return ready["status"], ready["reason"]


async def test_a_request_the_policy_allows_waits_then_is_signed_once_approved(manual: Harness) -> None:
    obj = await submitted(manual, request("worker", csr(), issuer_name=MANUAL))
    assert stage_of(obj) == ("False", "WaitingForApproval")
    assert f"certmint approve worker -n {NAMESPACE}" in condition(obj, "Ready")["message"]
    assert condition(obj, "Approved") == {} and "certificate" not in obj["status"]
    # Waiting costs nothing: no timer, no further write.
    mark = manual.mark()
    await manual.advance(3600)
    assert manual.since(mark, reads=False) == {}

    report = await person(manual, "approve", "worker", message="checked by the platform team")
    assert report["decision"] == "Approved"
    assert report["requested"]["dnsNames"] == ["worker.apps.svc"]
    mark = manual.mark()
    await manual.settle()
    # Signed on the approval's watch event, in one write.
    assert manual.since(mark, reads=False) == {("patch", "certificaterequests/status"): 1}
    obj = manual.get("CertificateRequest", NAMESPACE, "worker")
    assert stage_of(obj) == ("True", "Issued")
    approved = condition(obj, "Approved")
    assert (approved["status"], approved["reason"], approved["message"]) == (
        "True",
        "ApprovedByUser",
        "checked by the platform team",
    )
    assert public_key_matches(cached_key("ECDSA", 256), load_pem_chain(obj["status"]["certificate"].encode())[0])


async def test_a_denied_request_is_final_and_never_signed(manual: Harness, root_ca: CAPair) -> None:
    await submitted(manual, request("worker", csr(), issuer_name=MANUAL))
    await person(manual, "deny", "worker", reason="NotOurs", message="nobody asked for this")
    await manual.settle()
    obj = manual.get("CertificateRequest", NAMESPACE, "worker")
    assert stage_of(obj) == ("False", "Denied")
    assert "nobody asked for this" in condition(obj, "Ready")["message"]
    assert condition(obj, "Denied")["reason"] == "NotOurs"
    assert "certificate" not in obj["status"]
    with pytest.raises(CliError) as err:
        await person(manual, "approve", "worker")
    assert (
        err.value.message
        == f"cannot approve CertificateRequest {NAMESPACE}/worker: it is already denied, which is final"
    )
    mark = manual.mark()
    await manual.restart()
    assert manual.since(mark, reads=False) == {}


async def test_the_policy_judges_before_any_person(manual: Harness) -> None:
    obj = await submitted(manual, request("foreign", csr("x.other.svc", "x.other.svc"), issuer_name=MANUAL))
    assert (condition(obj, "Denied")["reason"], stage_of(obj)) == ("PolicyViolation", ("False", "Denied"))
    with pytest.raises(CliError) as err:
        await person(manual, "approve", "foreign")
    assert "already denied" in err.value.message


async def test_approved_then_refused_by_a_changed_policy_fails_unsigned(manual: Harness) -> None:
    await submitted(manual, request("worker", csr(), issuer_name=MANUAL))
    path = resources.object_path("ClusterIssuer", None, MANUAL)
    manual.api.edit(path, {"spec": {"policy": {"allowedDNSNames": ["*.other.svc"]}}})
    await manual.settle()  # still waiting: a waiting request is judged again with the issuer
    obj = manual.get("CertificateRequest", NAMESPACE, "worker")
    assert condition(obj, "Denied")["reason"] == "PolicyViolation", obj["status"]


async def test_a_request_approved_under_a_policy_that_changed_is_not_signed(manual: Harness) -> None:
    await submitted(manual, request("worker", csr(), issuer_name=MANUAL))
    await person(manual, "approve", "worker")
    # The policy changes before the operator saw the approval (both events arrive together; the issuer's first).
    path = resources.object_path("ClusterIssuer", None, MANUAL)
    manual.api.edit(path, {"spec": {"policy": {"allowedDNSNames": ["*.other.svc"]}}})
    await manual.settle()
    obj = manual.get("CertificateRequest", NAMESPACE, "worker")
    assert stage_of(obj) == ("False", "Failed")
    assert condition(obj, "Approved")["status"] == "True" and condition(obj, "Denied") == {}
    assert "approved, but ClusterIssuer 'manual-ca' refuses" in condition(obj, "Ready")["message"]
    assert "certificate" not in obj["status"]


async def test_approve_and_deny_refuse_what_is_not_theirs_to_decide(harness: Harness, manual: Harness) -> None:
    signed = await submitted(harness, request("automatic", csr()))  # an Automatic issuer: signed at once
    assert stage_of(signed) == ("True", "Issued")
    for verb, message in (
        ("approve", "it is already issued"),
        ("deny", "it is already issued"),
    ):
        with pytest.raises(CliError) as err:
            await person(harness, verb, "automatic")
        assert err.value.message.endswith(message)
    await submitted(manual, request("worker", csr(), issuer_name=MANUAL))
    await person(manual, "approve", "worker")
    with pytest.raises(CliError) as err:
        await person(manual, "approve", "worker")
    assert err.value.message.endswith("it is already approved")
    with pytest.raises(CliError) as err:
        await person(manual, "deny", "worker")
    assert err.value.message.endswith("it is already approved, which is final")
    with pytest.raises(CliError) as err:
        await person(manual, "approve", "nope")
    assert err.value.message == f"CertificateRequest {NAMESPACE}/nope not found"


async def test_a_person_may_deny_a_pending_request_of_any_issuer(harness: Harness) -> None:
    obj = await submitted(harness, request("early", csr(), issuer_name="not-yet"))
    assert stage_of(obj) == ("False", "Pending")
    await person(harness, "deny", "early")
    await harness.settle()
    harness.create(cluster_issuer("not-yet", ca_secret="internal-ca-key-pair"))
    await harness.settle()
    obj = harness.get("CertificateRequest", NAMESPACE, "early")
    assert stage_of(obj) == ("False", "Denied") and "certificate" not in obj["status"]


async def test_a_certificate_under_a_manual_issuer_is_refused_with_the_reason(manual: Harness) -> None:
    manual.create(certificate("web", NAMESPACE, issuer_name=MANUAL, dnsNames=["web.apps.svc"]))
    await manual.settle()
    obj = manual.certificate("web")
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ManualApprovalRequired")
    assert "approval is Automatic" in ready["message"]
    assert manual.requests() == [] and manual.secret("web-tls") is None
