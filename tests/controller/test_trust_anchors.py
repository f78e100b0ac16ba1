"""Trust anchors as a set: every root in a CA Secret's ca.crt reaches each certificate's ca.crt, in place.

That is what lets a person rotate a root without one refused handshake (issue 14): put the next root beside
the current one in the CA Secret's ca.crt (every Secret's ca.crt then holds both, rewritten without a
re-issue), switch the CA Secret's key pair to the new CA (the certificates are re-issued under it, and their
peers already trust it), drop the old root once nothing signed under it is left. At every step, each
certificate must verify under the ca.crt its peers held one step earlier (the kubelet refreshes volumes
late): that is checked here with an RFC 5280 path validation.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography import x509
from cryptography.x509 import verification

from certmint import metrics
from certmint.controller.certificate_plan import NEXT_CRT, NEXT_KEY, SWITCH_AT
from certmint.core.ca_rotation import IMMEDIATE, ROOT_REPLACEMENT
from certmint.core.conditions import parse_rfc3339
from certmint.pki.inspect import load_pem_chain
from tests.controller.conftest import CA_ISSUER, CA_SECRET, SELF_SIGNED, running_harness
from tests.controller.harness import OPERATOR_NAMESPACE, Harness, ca_secret, condition, controller_settings
from tests.controller.test_requests import csr, request, submitted
from tests.integration.builders import certificate, cluster_issuer
from tests.unit.builders import CAPair, build_ca

PEERS = ("web", "api")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def secret_of(name: str) -> str:
    return f"{name}-tls"


def trusts(ca_crt: bytes, tls_crt: bytes, name: str, harness: Harness) -> bool:
    """Whether a peer holding ``ca.crt`` accepts the chain ``tls.crt`` served for ``name``'s Service name."""
    served = load_pem_chain(tls_crt)
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(load_pem_chain(ca_crt)))
        .time(harness.clock.now())
        .build_server_verifier(x509.DNSName(f"{name}.apps.svc"))
    )
    try:
        verifier.verify(served[0], served[1:])
    except verification.VerificationError:
        return False
    return True


async def pass_time(harness: Harness, seconds: float) -> None:
    """Let ``seconds`` pass as they do for a running operator: its timers fire at their time, one after another
    (a root's rotation step looks at what it waits for from three quarters of a propagation time before it; a
    first look only at the step's time is what an operator that was down sees, and postpones the step)."""
    step = harness.settings.trust_propagation_seconds / 8
    end = harness.clock() + seconds
    while harness.clock() + step < end:
        await harness.advance(step)
    await harness.advance(end - harness.clock())


def snapshot(harness: Harness) -> dict[str, dict[str, bytes]]:
    return {name: harness.secret_data(secret_of(name)) for name in PEERS}


def assert_mutual_trust(harness: Harness, held: dict[str, dict[str, bytes]], now: dict[str, dict[str, bytes]]) -> None:
    """Every certificate as it is now is accepted by every peer holding the ca.crt of ``held`` (a late volume),
    and by every peer holding the current one."""
    for peer in PEERS:
        for name in PEERS:
            for ca_crt in (held[peer]["ca.crt"], now[peer]["ca.crt"]):
                assert trusts(ca_crt, now[name]["tls.crt"], name, harness), (peer, name)


async def test_a_root_rotated_by_hand_through_ca_crt_never_leaves_a_peer_untrusted(
    harness: Harness, root_ca: CAPair
) -> None:
    first = {name: await harness.issued(name, issuer=CA_ISSUER) for name in PEERS}
    start = snapshot(harness)
    recheck = harness.settings.issuer_recheck_seconds
    next_root = build_ca("Next Root CA")

    # 1. Announce: the next root joins the CA Secret's ca.crt. Every ca.crt gets both, nothing is re-issued.
    mark = harness.mark()
    harness.patch(
        "Secret", OPERATOR_NAMESPACE, CA_SECRET, {"data": {"ca.crt": b64(root_ca.cert_pem + next_root.cert_pem)}}
    )
    await harness.advance(recheck)
    announced = snapshot(harness)
    for name in PEERS:
        assert announced[name]["ca.crt"] == root_ca.cert_pem + next_root.cert_pem
        assert announced[name]["tls.crt"] == start[name]["tls.crt"]
        assert harness.certificate(name)["status"]["serialNumber"] == first[name]["serialNumber"]
    assert harness.requests() == [] or all(r["metadata"]["name"].endswith("-1") for r in harness.requests())
    writes = harness.since(mark, reads=False)
    assert writes.get(("patch", "secrets")) == len(PEERS), writes  # one in-place patch per Secret
    anchors = harness.get("ClusterIssuer", None, CA_ISSUER)["status"]["trustAnchors"]
    assert [(a["subject"], a["signsThisCA"]) for a in anchors] == [
        (root_ca.cert.subject.rfc4514_string(), True),
        (next_root.cert.subject.rfc4514_string(), False),
    ]
    assert_mutual_trust(harness, start, announced)

    # 2. Switch: the CA Secret's key pair becomes the new root's; the old root stays in ca.crt. Every certificate
    # is re-issued under the new CA (spread over the propagation time: their old certificates are still trusted),
    # and a peer whose volume still holds the announced ca.crt accepts it.
    harness.patch(
        "Secret",
        OPERATOR_NAMESPACE,
        CA_SECRET,
        {"data": {"tls.crt": b64(next_root.cert_pem), "tls.key": b64(next_root.key_pem)}},
    )
    await harness.advance(recheck)
    await harness.advance(harness.settings.trust_propagation_seconds)
    switched = snapshot(harness)
    for name in PEERS:
        assert load_pem_chain(switched[name]["tls.crt"])[0].issuer == next_root.cert.subject
        assert switched[name]["ca.crt"] == root_ca.cert_pem + next_root.cert_pem  # ca.crt's order, unchanged
        assert harness.certificate(name)["status"]["revision"] == 2
    assert_mutual_trust(harness, announced, switched)

    # 3. Retire: the old root leaves ca.crt. Nothing is re-issued; the certificates were all signed under the new
    # root, which every peer already trusts.
    harness.patch("Secret", OPERATOR_NAMESPACE, CA_SECRET, {"data": {"ca.crt": b64(next_root.cert_pem)}})
    await harness.advance(recheck)
    retired = snapshot(harness)
    for name in PEERS:
        assert retired[name]["ca.crt"] == next_root.cert_pem
        assert retired[name]["tls.crt"] == switched[name]["tls.crt"]
        assert harness.certificate(name)["status"]["revision"] == 2
    assert_mutual_trust(harness, switched, retired)
    assert not trusts(root_ca.cert_pem, retired["web"]["tls.crt"], "web", harness)  # the old root alone would not


async def test_an_expired_root_in_ca_crt_is_left_out_of_every_certificates_ca_crt(
    harness: Harness, root_ca: CAPair
) -> None:
    await harness.issued("web", issuer=CA_ISSUER)
    now = harness.clock.now()
    old = build_ca(
        "Retired Root CA", not_before=now.replace(year=now.year - 2), not_after=now.replace(year=now.year - 1)
    )
    harness.patch("Secret", OPERATOR_NAMESPACE, CA_SECRET, {"data": {"ca.crt": b64(root_ca.cert_pem + old.cert_pem)}})
    await harness.advance(harness.settings.issuer_recheck_seconds)
    assert harness.secret_data(secret_of("web"))["ca.crt"] == root_ca.cert_pem
    anchors = harness.get("ClusterIssuer", None, CA_ISSUER)["status"]["trustAnchors"]
    assert [a["subject"] for a in anchors] == [root_ca.cert.subject.rfc4514_string()]


# -- certmint's own root, rotated in phases -------------------------------------------------------------------

ROOT = "mesh-root"
ROOT_SECRET = "mesh-root-tls"
MESH = "mesh-ca"


async def _mesh(harness: Harness) -> dict[str, dict[str, bytes]]:
    """A root CA Certificate of certmint's (selfSigned issuer), a CA ClusterIssuer on its Secret, two leaves."""
    harness.create(
        certificate(
            ROOT,
            OPERATOR_NAMESPACE,
            issuer_name=SELF_SIGNED,
            isCA=True,
            commonName="Mesh Root CA",
            dnsNames=None,
            duration="720h",
            secretName=ROOT_SECRET,
        )
    )
    await harness.settle()
    harness.create(cluster_issuer(MESH, ca_secret=ROOT_SECRET))
    await harness.settle()
    for name in PEERS:
        await harness.issued(name, issuer=MESH)
    return snapshot(harness)


def _root(harness: Harness) -> dict[str, Any]:
    return harness.get("Certificate", OPERATOR_NAMESPACE, ROOT)


def _rotation_steps(name: str) -> dict[str, float]:
    """certmint_root_rotation_next_step_timestamp_seconds of a root: step -> when."""
    return {
        sample.labels["step"]: sample.value
        for family in metrics.root_rotation.collect()
        for sample in family.samples
        if sample.labels["name"] == name and sample.labels["namespace"] == OPERATOR_NAMESPACE
    }


def _root_data(harness: Harness) -> dict[str, bytes]:
    return harness.secret_data(ROOT_SECRET, OPERATOR_NAMESPACE)


async def test_certmints_own_root_is_staged_switched_and_retired_without_a_peer_untrusted(harness: Harness) -> None:
    start = await _mesh(harness)
    old_root = _root_data(harness)["tls.crt"]
    propagation = harness.settings.trust_propagation_seconds
    assert propagation > 0

    # A change that re-issues the root with a new key (as a person would make it).
    harness.patch("Certificate", OPERATOR_NAMESPACE, ROOT, {"spec": {"duration": "700h"}})
    await harness.settle()
    staged = _root_data(harness)
    next_root = staged[NEXT_CRT]
    assert staged["tls.crt"] == old_root and staged["ca.crt"] == old_root + next_root
    root = _root(harness)
    assert condition(root, "Issuing")["reason"] == "RootStaged" and condition(root, "Ready")["status"] == "True"
    assert root["status"]["revision"] == 1
    rotation = harness.get("ClusterIssuer", None, MESH)["status"]["rotation"]
    assert rotation["phase"] == "NextRootStaged"
    switch_at = parse_rfc3339(rotation["nextStepAt"]).timestamp()
    assert switch_at == harness.clock() + propagation
    assert _rotation_steps(ROOT) == {"switch": switch_at}
    announced = snapshot(harness)
    for name in PEERS:  # the next root reached every certificate's ca.crt, nothing re-issued
        assert announced[name]["ca.crt"] == old_root + next_root
        assert announced[name]["tls.crt"] == start[name]["tls.crt"]
    assert_mutual_trust(harness, start, announced)

    # A restart in the middle of the phase resumes it: same switch time, nothing signed twice.
    await harness.restart()
    assert _root_data(harness)[NEXT_CRT] == next_root

    await pass_time(harness, propagation)
    switched_at = harness.clock()
    switched_root = _root_data(harness)
    assert switched_root["tls.crt"] == next_root and NEXT_CRT not in switched_root and NEXT_KEY not in switched_root
    assert switched_root["ca.crt"] == old_root + next_root
    root = _root(harness)
    assert root["status"]["revision"] == 2 and condition(root, "Ready")["reason"] == "Renewed"
    assert "RootSwitched" in harness.event_reasons(ROOT, OPERATOR_NAMESPACE)
    rotation = harness.get("ClusterIssuer", None, MESH)["status"]["rotation"]
    assert rotation["phase"] == "PreviousRootRetiring"
    assert parse_rfc3339(rotation["nextStepAt"]).timestamp() == switched_at + 2 * propagation
    assert _rotation_steps(ROOT) == {"retire": switched_at + 2 * propagation}
    # The leaves are re-issued spread over the next propagation time (their old ones are still trusted meanwhile).
    reissued_at = {}
    while len(reissued_at) < len(PEERS) and harness.clock() < switched_at + propagation:
        await harness.advance(1)
        for name in PEERS:
            if name not in reissued_at and harness.certificate(name)["status"]["revision"] == 2:
                reissued_at[name] = harness.clock() - switched_at
                assert_mutual_trust(harness, announced, snapshot(harness))  # half old, half new: all trusted
    assert set(reissued_at) == set(PEERS), reissued_at
    switched = snapshot(harness)
    new_root_cert = load_pem_chain(next_root)[0]
    for name in PEERS:  # re-issued under the new root, which their peers trust since it was staged
        assert load_pem_chain(switched[name]["tls.crt"])[0].issuer == new_root_cert.subject
        assert harness.certificate(name)["status"]["revision"] == 2
        assert switched[name]["ca.crt"] == old_root + next_root
    assert_mutual_trust(harness, announced, switched)

    await pass_time(harness, 2 * propagation - (harness.clock() - switched_at))
    assert _root_data(harness)["ca.crt"] == next_root
    retired = snapshot(harness)
    for name in PEERS:
        assert retired[name]["ca.crt"] == next_root
        assert retired[name]["tls.crt"] == switched[name]["tls.crt"]
    assert_mutual_trust(harness, switched, retired)
    assert "RootRetired" in harness.event_reasons(ROOT, OPERATOR_NAMESPACE)
    assert _rotation_steps(ROOT) == {}
    assert "rotation" not in harness.get("ClusterIssuer", None, MESH)["status"]
    assert _root(harness)["status"]["revision"] == 2


async def test_an_intermediate_of_certmints_is_replaced_at_once_without_a_trust_change(
    harness: Harness, root_ca: CAPair
) -> None:
    """The root is unchanged, so nothing needs to be announced: the intermediate is re-issued and switched at once,
    every certificate's ca.crt stays as it was, and its certificates are re-issued under the new intermediate,
    spread over the re-issue window (the old intermediate still leads to the root every peer trusts)."""
    harness.create(cluster_issuer("root-of-intermediates", ca_secret=CA_SECRET, policy={"allowCA": True}))
    harness.create(
        certificate(
            "mesh-intermediate",
            OPERATOR_NAMESPACE,
            issuer_name="root-of-intermediates",
            isCA=True,
            commonName="Mesh Intermediate CA",
            dnsNames=None,
            duration="720h",
            secretName="mesh-intermediate-tls",
        )
    )
    await harness.settle()
    harness.create(cluster_issuer(MESH, ca_secret="mesh-intermediate-tls"))
    await harness.settle()
    for name in PEERS:
        await harness.issued(name, issuer=MESH)
    before = snapshot(harness)
    harness.patch("Certificate", OPERATOR_NAMESPACE, "mesh-intermediate", {"spec": {"duration": "700h"}})
    await harness.settle()
    assert NEXT_CRT not in harness.secret_data("mesh-intermediate-tls", OPERATOR_NAMESPACE)
    assert snapshot(harness) == before  # nothing re-issued yet: the spread starts at the change
    for name in PEERS:
        assert condition(harness.certificate(name), "Issuing")["reason"] == "ReissueScheduled"
    await pass_time(harness, harness.settings.trust_propagation_seconds)
    after = snapshot(harness)
    for name in PEERS:
        assert after[name]["ca.crt"] == before[name]["ca.crt"] == root_ca.cert_pem
        assert after[name]["tls.crt"] != before[name]["tls.crt"]
    assert_mutual_trust(harness, before, after)


async def test_a_root_is_replaced_at_once_when_nothing_can_trust_it_meanwhile_or_it_keeps_its_key(
    harness: Harness,
) -> None:
    """No phases where they would protect nothing: rotationPolicy Never (the same key: leaves stay valid under the
    new root certificate), and an expired root (it is trusted by nobody any more)."""
    await _mesh(harness)
    old_root = _root_data(harness)["tls.crt"]
    harness.patch(
        "Certificate",
        OPERATOR_NAMESPACE,
        ROOT,
        {"spec": {"duration": "700h", "privateKey": {"rotationPolicy": "Never"}}},
    )
    await harness.settle()
    data = _root_data(harness)
    assert NEXT_CRT not in data and data["tls.crt"] != old_root and _root(harness)["status"]["revision"] == 2
    assert data["tls.key"] == harness.secret_data(ROOT_SECRET, OPERATOR_NAMESPACE)["tls.key"]

    harness.patch("Certificate", OPERATOR_NAMESPACE, ROOT, {"spec": {"privateKey": {"rotationPolicy": "Always"}}})
    await harness.settle()
    # The operator was down until after the root expired: it is replaced at once, with nothing staged.
    await harness.stop()
    expiry = load_pem_chain(_root_data(harness)["tls.crt"])[0].not_valid_after_utc
    harness.clock.t = expiry.timestamp() + 60
    await harness.restart()
    data = _root_data(harness)
    assert NEXT_CRT not in data and load_pem_chain(data["tls.crt"])[0].not_valid_after_utc > harness.clock.now()
    annotations = (harness.secret(ROOT_SECRET, OPERATOR_NAMESPACE) or {})["metadata"].get("annotations") or {}
    assert SWITCH_AT not in annotations


async def test_with_no_propagation_delay_a_root_is_replaced_at_once(root_ca: CAPair) -> None:
    async with running_harness(root_ca, controller_settings(trust_propagation_seconds=0)) as harness:
        start = await _mesh(harness)
        harness.patch("Certificate", OPERATOR_NAMESPACE, ROOT, {"spec": {"duration": "700h"}})
        await harness.settle()
        data = _root_data(harness)
        assert NEXT_CRT not in data and data["ca.crt"] == data["tls.crt"]
        for name in PEERS:  # re-issued at once, ca.crt the new root alone: the hole phases exist to close
            assert snapshot(harness)[name]["ca.crt"] == data["tls.crt"] != start[name]["ca.crt"]


async def test_after_a_root_switch_the_certificates_are_reissued_spread_over_the_propagation_time(
    harness: Harness,
) -> None:
    """Not all at once: each certificate signed by the previous root (still trusted) at its own time within the
    propagation delay, so the switch is no burst for the API server and is done before that root is retired.
    A restart in the middle neither resumes a deferred certificate from its status nor re-issues early: the new
    process spreads what is left over the propagation time from its start, still before the retirement."""
    await _mesh(harness)
    many = [f"svc-{i:02d}" for i in range(20)]
    for name in many:
        await harness.issued(name, issuer=MESH)
    propagation = harness.settings.trust_propagation_seconds
    harness.patch("Certificate", OPERATOR_NAMESPACE, ROOT, {"spec": {"duration": "700h"}})
    await harness.settle()
    await pass_time(harness, propagation)  # the switch
    switched_at = harness.clock()
    deferred = [n for n in many if condition(harness.certificate(n), "Issuing")["reason"] == "ReissueScheduled"]
    assert len(deferred) >= len(many) - 2, deferred  # at most a couple drew a time of (almost) zero
    assert all("verified" not in harness.certificate(n)["status"] for n in deferred)
    times: dict[str, float] = {}
    restarted_after: float | None = None
    while len(times) < len(many) and harness.clock() <= switched_at + 2 * propagation:
        await harness.advance(2)
        for name in many:
            if name not in times and harness.certificate(name)["status"]["revision"] == 2:
                times[name] = harness.clock() - switched_at
        if restarted_after is None and harness.clock() >= switched_at + propagation / 2:
            await harness.restart()
            restarted_after = harness.clock() - switched_at
    assert restarted_after is not None
    assert set(times) == set(many), sorted(set(many) - set(times))
    assert max(times.values()) <= restarted_after + propagation + 2 < 2 * propagation  # before the retirement
    assert _root_data(harness)["ca.crt"].count(b"BEGIN CERTIFICATE") == 2  # the previous root not retired yet
    buckets = {int(t // (propagation / 4)) for t in times.values()}
    assert len(buckets) >= 3, times  # spread over the window, not one burst


async def test_a_renew_request_on_the_root_starts_a_rotation(harness: Harness) -> None:
    await _mesh(harness)
    harness.patch(
        "Certificate", OPERATOR_NAMESPACE, ROOT, {"metadata": {"annotations": {"certmint.dev/renew-request": "now"}}}
    )
    await harness.settle()
    assert NEXT_CRT in _root_data(harness)
    root = _root(harness)
    assert condition(root, "Issuing")["reason"] == "RootStaged" and root["status"]["lastRenewRequest"] == "now"
    await pass_time(harness, harness.settings.trust_propagation_seconds)
    assert _root(harness)["status"]["revision"] == 2
    await harness.restart()
    assert _root(harness)["status"]["revision"] == 2 and NEXT_CRT not in _root_data(harness)  # honoured once


async def test_a_staged_root_in_a_secret_certmint_does_not_own_is_never_switched_to(harness: Harness) -> None:
    """An attacker's Secret dressed as a root's staged rotation (next-tls.* matching the spec, a switch time
    passed) under the name a root Certificate asks for: certmint writes nothing into it (SecretNotOwned)."""
    spec = {"isCA": True, "commonName": "Mesh Root CA", "dnsNames": None, "duration": "720h"}
    harness.create(certificate("donor", OPERATOR_NAMESPACE, issuer_name=SELF_SIGNED, secretName="donor-tls", **spec))
    await harness.settle()
    donor = harness.secret_data("donor-tls", OPERATOR_NAMESPACE)
    forged = {
        "tls.crt": donor["tls.crt"],
        "tls.key": donor["tls.key"],
        "ca.crt": donor["tls.crt"],
        NEXT_CRT: donor["tls.crt"],
        NEXT_KEY: donor["tls.key"],
    }
    harness.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {
                "name": "forged-tls",
                "namespace": OPERATOR_NAMESPACE,
                "annotations": {SWITCH_AT: "2000-01-01T00:00:00Z"},
            },
            "data": {k: b64(v) for k, v in forged.items()},
        }
    )
    before = harness.secret("forged-tls", OPERATOR_NAMESPACE)
    mark = harness.mark()
    harness.create(certificate("victim", OPERATOR_NAMESPACE, issuer_name=SELF_SIGNED, secretName="forged-tls", **spec))
    await harness.settle()
    assert condition(harness.get("Certificate", OPERATOR_NAMESPACE, "victim"), "Ready")["reason"] == "SecretNotOwned"
    assert harness.secret("forged-tls", OPERATOR_NAMESPACE) == before
    assert ("patch", "secrets") not in harness.since(mark, reads=False)


async def test_the_switch_waits_for_every_trust_set_and_then_half_a_propagation_time(harness: Harness) -> None:
    """A certificate whose Secret cannot take the next root (its writes fail) holds the switch, however long; once
    it has it, the switch comes no sooner than half a propagation time later, and it comes."""
    await _mesh(harness)
    old_root = _root_data(harness)["tls.crt"]
    propagation = harness.settings.trust_propagation_seconds
    refused = harness.api.fail("patch", "secrets", name=secret_of("web"), times=10**6)
    harness.patch("Certificate", OPERATOR_NAMESPACE, ROOT, {"spec": {"duration": "700h"}})
    await harness.settle()
    next_root = _root_data(harness)[NEXT_CRT]
    assert harness.secret_data(secret_of("api"))["ca.crt"] == old_root + next_root
    for _ in range(12):  # three propagation times, looked at every quarter
        await harness.advance(propagation / 4)
        assert _root_data(harness)["tls.crt"] == old_root, "switched while web's ca.crt lacks the next root"
    assert harness.secret_data(secret_of("web"))["ca.crt"] == old_root
    issuing = condition(_root(harness), "Issuing")
    assert issuing["reason"] == "RootStaged" and "1 trust set(s) do not have it yet" in issuing["message"]

    refused.times = 0  # web's Secret takes writes again: at its next retry (the back-off is at most an hour)
    announced_at = switched_at = None
    give_up = harness.clock() + 3600 + 3 * propagation
    while switched_at is None and harness.clock() < give_up:
        await harness.advance(1)
        if announced_at is None and harness.secret_data(secret_of("web"))["ca.crt"] == old_root + next_root:
            announced_at = harness.clock()
        if _root_data(harness)["tls.crt"] == next_root:
            switched_at = harness.clock()
    assert announced_at is not None and switched_at is not None, (announced_at, switched_at)
    assert switched_at - announced_at >= propagation / 2, (announced_at, switched_at)


# -- a CA Secret that a person replaces: the issuer runs the phases (core.ca_rotation) -----------------------------


def _issuer_status(harness: Harness) -> dict[str, Any]:
    status: dict[str, Any] = harness.get("ClusterIssuer", None, CA_ISSUER)["status"]
    return status


def _issuer_steps() -> dict[str, float]:
    """certmint_issuer_root_rotation_next_step_timestamp_seconds of the CA issuer: step -> when."""
    return {
        sample.labels["step"]: sample.value
        for family in metrics.issuer_rotation.collect()
        for sample in family.samples
        if sample.labels["name"] == CA_ISSUER and sample.labels["kind"] == "ClusterIssuer"
    }


def _replace_ca_secret(harness: Harness, ca: CAPair) -> None:
    """What `kubectl create secret tls --dry-run=client -o yaml | kubectl apply -f -` with a new CA does."""
    harness.patch(
        "Secret",
        OPERATOR_NAMESPACE,
        CA_SECRET,
        {"data": {"tls.crt": b64(ca.cert_pem), "tls.key": b64(ca.key_pem), "ca.crt": b64(ca.cert_pem)}},
    )


def assert_signed_under_anchors(harness: Harness, names: tuple[str, ...]) -> None:
    """No certificate in use is signed under a root that a peer's ca.crt lacks (the invariant of every phase)."""
    for peer in names:
        for name in names:
            data = harness.secret_data(secret_of(name))
            assert trusts(harness.secret_data(secret_of(peer))["ca.crt"], data["tls.crt"], name, harness), (peer, name)


async def test_a_replaced_ca_secret_is_rotated_in_phases_without_a_peer_untrusted(
    harness: Harness, root_ca: CAPair
) -> None:
    """A person replaces the CA Secret (tls.crt, tls.key and ca.crt) with a CA under a new root. certmint keeps the
    previous root as a trust anchor, signs nothing under the new one until every trust set holds it, then
    re-issues, then retires the previous root; at every step each certificate verifies under the ca.crt its peers
    held one step earlier."""
    for name in PEERS:
        await harness.issued(name, issuer=CA_ISSUER)
    start = snapshot(harness)
    propagation = harness.settings.trust_propagation_seconds
    new_ca = build_ca("Replacement Root CA")

    _replace_ca_secret(harness, new_ca)
    await harness.advance(harness.settings.issuer_recheck_seconds)  # a person's Secret: seen at the re-check
    announced_at = harness.clock()
    announced = snapshot(harness)
    for name in PEERS:  # both roots in every ca.crt, in place; nothing re-issued
        assert announced[name]["ca.crt"] == new_ca.cert_pem + root_ca.cert_pem
        assert announced[name]["tls.crt"] == start[name]["tls.crt"]
        assert condition(harness.certificate(name), "Ready")["status"] == "True"
    assert_mutual_trust(harness, start, announced)
    rotation = _issuer_status(harness)["rotation"]
    assert rotation["phase"] == "NextRootStaged" and rotation["source"] == "CASecretReplaced"
    assert rotation["message"] == "2 trust set(s) (certificates' ca.crt, Bundles) do not hold the new root yet"
    assert rotation["previousRoots"] == [root_ca.cert_pem.decode()]
    assert parse_rfc3339(rotation["nextStepAt"]).timestamp() == announced_at + propagation
    assert [a["signsThisCA"] for a in _issuer_status(harness)["trustAnchors"]] == [True, False]
    assert harness.event_reasons(CA_ISSUER, "default") == ["RootStaged"]

    # A Certificate created meanwhile waits for the switch: nothing is signed under the new root before it.
    harness.create(certificate("late", "apps", issuer_name=CA_ISSUER, duration="24h"))
    await harness.settle()
    late = harness.certificate("late")
    assert condition(late, "Ready")["reason"] == "WaitingForTrust", late.get("status")
    assert harness.secret(secret_of("late")) is None
    assert not [r for r in harness.requests() if r["metadata"]["name"].startswith("late")]

    # So does a bare CertificateRequest.
    worker = await submitted(harness, request("worker", csr("worker.apps.svc")))
    assert condition(worker, "Ready")["reason"] == "Pending" and "certificate" not in (worker.get("status") or {})
    assert (
        "signs under the new root of its CA Secret only once every trust set holds it"
        in (condition(worker, "Ready")["message"])
    )
    assert _issuer_steps() == {"switch": announced_at + propagation}

    # A restart in the middle of the phase resumes it from the issuer's status: same switch time.
    await harness.restart()
    assert {**_issuer_status(harness)["rotation"], "message": None} == {**rotation, "message": None}
    assert snapshot(harness) == announced

    await pass_time(harness, propagation)
    switched_at = harness.clock()
    rotation = _issuer_status(harness)["rotation"]
    assert rotation["phase"] == "PreviousRootRetiring"
    assert harness.event_reasons(CA_ISSUER, "default") == ["RootStaged", "RootSwitched"]
    assert _issuer_steps() == {"retire": parse_rfc3339(rotation["nextStepAt"]).timestamp()}
    assert condition(harness.certificate("late"), "Ready")["status"] == "True"
    signed = harness.get("CertificateRequest", "apps", "worker")["status"]["certificate"]
    assert load_pem_chain(signed.encode())[0].issuer == new_ca.cert.subject
    late_leaf = load_pem_chain(harness.secret_data(secret_of("late"))["tls.crt"])[0]
    assert late_leaf.issuer == new_ca.cert.subject
    assert harness.secret_data(secret_of("late"))["ca.crt"] == new_ca.cert_pem + root_ca.cert_pem
    # The leaves are re-issued spread over the re-issue window; half old, half new: all trusted.
    while harness.clock() < switched_at + propagation + 1:
        await harness.advance(1)
        assert_mutual_trust(harness, announced, snapshot(harness))
    switched = snapshot(harness)
    for name in PEERS:
        assert load_pem_chain(switched[name]["tls.crt"])[0].issuer == new_ca.cert.subject
        assert switched[name]["ca.crt"] == new_ca.cert_pem + root_ca.cert_pem
    assert_mutual_trust(harness, announced, switched)

    await pass_time(harness, 2 * propagation - (harness.clock() - switched_at))
    retired = snapshot(harness)
    for name in PEERS:
        assert retired[name]["ca.crt"] == new_ca.cert_pem
        assert retired[name]["tls.crt"] == switched[name]["tls.crt"]
    assert_mutual_trust(harness, switched, retired)
    assert "rotation" not in _issuer_status(harness)
    assert harness.event_reasons(CA_ISSUER, "default") == ["RootStaged", "RootSwitched", "RootRetired"]
    assert _issuer_steps() == {}
    assert [a["fingerprint"] for a in _issuer_status(harness)["trustAnchors"]] == [
        _issuer_status(harness)["caFingerprint"]
    ]


async def test_a_replaced_root_annotated_immediate_takes_effect_at_once(harness: Harness, root_ca: CAPair) -> None:
    """A compromised CA: the person replaces the CA Secret and annotates the issuer root-replacement=Immediate. The
    rotation in progress ends: the previous root leaves every ca.crt and every certificate is re-issued now."""
    for name in PEERS:
        await harness.issued(name, issuer=CA_ISSUER)
    new_ca = build_ca("Replacement Root CA")
    _replace_ca_secret(harness, new_ca)
    await harness.advance(harness.settings.issuer_recheck_seconds)
    assert _issuer_status(harness)["rotation"]["phase"] == "NextRootStaged"

    harness.patch("ClusterIssuer", None, CA_ISSUER, {"metadata": {"annotations": {ROOT_REPLACEMENT: IMMEDIATE}}})
    await harness.settle()
    assert "rotation" not in _issuer_status(harness)
    for name in PEERS:
        data = harness.secret_data(secret_of(name))
        assert data["ca.crt"] == new_ca.cert_pem
        assert load_pem_chain(data["tls.crt"])[0].issuer == new_ca.cert.subject
        assert harness.certificate(name)["status"]["revision"] == 2
    assert _issuer_steps() == {}


async def test_a_replaced_intermediate_under_a_new_root_has_its_certificates_reissued_spread(harness: Harness) -> None:
    """The person's CA Secret holds an intermediate under root R1 and is replaced by one under R2: after the switch
    the certificates signed by the previous intermediate (which still leads to R1, a kept anchor) are re-issued spread
    over the window, not all at the switch."""
    first_root, second_root = build_ca("Person Root 1"), build_ca("Person Root 2")
    first = build_ca("Person Issuing CA 1", parent=first_root)
    harness.create(ca_secret("person-ca", OPERATOR_NAMESPACE, first, ca_crt=first_root.cert_pem))
    harness.create(cluster_issuer("person", ca_secret="person-ca"))
    await harness.settle()
    many = [f"svc-{i:02d}" for i in range(20)]
    for name in many:
        await harness.issued(name, issuer="person")
    propagation = harness.settings.trust_propagation_seconds
    second = build_ca("Person Issuing CA 2", parent=second_root)
    replacement = ca_secret("person-ca", OPERATOR_NAMESPACE, second, ca_crt=second_root.cert_pem)
    harness.patch("Secret", OPERATOR_NAMESPACE, "person-ca", {"data": replacement["data"]})
    await harness.advance(harness.settings.issuer_recheck_seconds)
    assert harness.get("ClusterIssuer", None, "person")["status"]["rotation"]["phase"] == "NextRootStaged"
    await pass_time(harness, propagation)  # the switch
    switched_at = harness.clock()
    assert harness.get("ClusterIssuer", None, "person")["status"]["rotation"]["phase"] == "PreviousRootRetiring"
    deferred = [n for n in many if condition(harness.certificate(n), "Issuing")["reason"] == "ReissueScheduled"]
    assert len(deferred) >= len(many) - 2, deferred  # at most a couple drew a time of (almost) zero
    times: dict[str, float] = {}
    while len(times) < len(many) and harness.clock() <= switched_at + 2 * propagation:
        await harness.advance(2)
        for name in many:
            if name not in times and harness.certificate(name)["status"]["revision"] == 2:
                times[name] = harness.clock() - switched_at
                leaf = load_pem_chain(harness.secret_data(secret_of(name))["tls.crt"])[0]
                assert leaf.issuer == second.cert.subject, name
    assert set(times) == set(many), sorted(set(many) - set(times))
    buckets = {int(t // (propagation / 4)) for t in times.values()}
    assert len(buckets) >= 3, times  # spread over the window, not one burst
