"""What a restarted operator, or a standby that takes over, asks of the API server per Certificate (issue 18).

A Certificate whose status, Secret and issuer agree with each other when the operator starts costs no request of its
own: nothing is read (the lists the watches start with already said everything) and nothing is written; its renewal
timer is back at the time it had before. What changed while no operator was leading is still read and judged again:
a Secret with another resourceVersion than the one the operator last saw, a changed spec (a new generation), a status
that does not say Ready, an issuer with another CA.

The counts are the fake API's, by verb and resource (and the name, for Secret reads), from the moment the new leader
starts until it has nothing left to do.
"""

from __future__ import annotations

import base64
import collections
import datetime
from typing import Any

import pytest

from certmint.controller.state import Kind
from certmint.core.conditions import parse_rfc3339
from certmint.pki.inspect import certificate_facts, load_pem_chain
from certmint.pki.keys import encode_private_key, generate_private_key, load_private_key, public_key_matches
from tests.controller.conftest import CA_ISSUER, CA_SECRET, running_harness
from tests.controller.harness import (
    NAMESPACE,
    OPERATOR_NAMESPACE,
    REISSUE_REQUESTS,
    Crash,
    Harness,
    ca_secret,
    condition,
)
from tests.controller.test_trust_anchors import pass_time
from tests.integration.builders import certificate, cluster_issuer
from tests.unit.builders import CAPair, build_ca

COUNT = 20
Requests = dict[tuple[str, str], int]


def names(count: int = COUNT) -> list[str]:
    return [f"svc-{i:02d}" for i in range(count)]


def secret_of(name: str) -> str:
    return f"{name}-tls"  # what tests.integration.builders.certificate names it


async def issue_all(harness: Harness, certificates: list[str], **spec: Any) -> dict[str, dict[str, Any]]:
    """Create the Certificates (CA issuer, 24h), let the operator settle; their statuses, all Ready."""
    spec.setdefault("duration", "24h")
    for name in certificates:
        harness.create(certificate(name, NAMESPACE, issuer_name=CA_ISSUER, **spec))
    await harness.settle()
    statuses = {}
    for name in certificates:
        cert = harness.certificate(name)
        assert condition(cert, "Ready")["status"] == "True", cert.get("status")
        statuses[name] = cert["status"]
    return statuses


def renewal_timers(harness: Harness, certificates: list[str]) -> dict[str, float | None]:
    """When the leading operator will next look at each Certificate by itself (None: never)."""
    return {name: harness.op.queue.due_at((Kind.CERTIFICATE, NAMESPACE, name)) for name in certificates}


def secrets_read(harness: Harness, logged: int) -> collections.Counter[str]:
    """The Secrets read by name (GET) since the request log held ``logged`` entries."""
    return collections.Counter(
        str(name) for verb, resource, name in harness.api.log[logged:] if (verb, resource) == ("get", "secrets")
    )


def certificate_secrets_read(harness: Harness, logged: int) -> collections.Counter[str]:
    """As :func:`secrets_read`, without the CA issuer's CA Secret (one read per issuer check, not per Certificate)."""
    reads = secrets_read(harness, logged)
    reads.pop(CA_SECRET, None)
    return reads


def report(what: str, count: int, requests: Requests, reads: collections.Counter[str]) -> str:
    by_kind = ", ".join(f"{verb} {resource}: {n}" for (verb, resource), n in sorted(requests.items()))
    return (
        f"{what} with {count} Certificates settled: {by_kind or 'no request'}; "
        f"Certificate Secrets read: {sum(reads.values())} ({sum(reads.values()) / count:.2f} per Certificate)"
    )


def assert_nothing_per_certificate(
    harness: Harness, what: str, certificates: list[str], mark: Requests, logged: int
) -> None:
    requests, reads = harness.since(mark), certificate_secrets_read(harness, logged)
    print(f"\n{report(what, len(certificates), requests, reads)}")
    assert not reads, f"{what}: {report(what, len(certificates), requests, reads)}; by name: {dict(reads)}"
    assert harness.since(mark, reads=False) == {}, f"{what} wrote: {harness.since(mark, reads=False)}"


def assert_statuses_unchanged(harness: Harness, statuses: dict[str, dict[str, Any]], but: str | None = None) -> None:
    """Every Certificate of ``statuses`` but ``but`` still has the status it had."""
    for name, status in statuses.items():
        if name != but:
            assert harness.certificate(name)["status"] == status, name


def assert_unchanged(harness: Harness, statuses: dict[str, dict[str, Any]], timers: dict[str, float | None]) -> None:
    """Every Certificate as before, with its renewal timer at the same time as before: its status' renewalTime (which
    is written in whole seconds)."""
    assert {name: harness.certificate(name)["status"] for name in statuses} == statuses
    after = renewal_timers(harness, list(statuses))
    for name, status in statuses.items():
        renewal = parse_rfc3339(status["renewalTime"]).timestamp()
        before, now = timers[name], after[name]
        assert before is not None and renewal <= before < renewal + 1, (name, before, status["renewalTime"])
        assert now is not None and renewal <= now < renewal + 1, f"{name}: timer {now}, renewalTime {renewal}"
        assert harness.event_reasons(name) == ["Issued"]


async def assert_renewals_read_nothing(harness: Harness, statuses: dict[str, dict[str, Any]]) -> None:
    """The rebuilt timers fire: every Certificate renews once, at its time, without its Secret being read."""
    last = max(parse_rfc3339(s["renewalTime"]) for s in statuses.values())
    mark, logged = harness.mark(), len(harness.api.log)
    await harness.advance_to(last + datetime.timedelta(seconds=1))
    assert {n: harness.certificate(n)["status"]["revision"] for n in statuses} == dict.fromkeys(statuses, 2)
    expected = {k: n * len(statuses) for k, n in REISSUE_REQUESTS.items()}
    assert harness.since(mark, reads=False) == expected
    assert not certificate_secrets_read(harness, logged)


# -- everything in place -------------------------------------------------------------------------------------------


async def test_a_restart_with_everything_in_place_reads_and_writes_nothing_per_certificate(harness: Harness) -> None:
    certificates = names()
    statuses = await issue_all(harness, certificates)
    timers = renewal_timers(harness, certificates)
    assert all(timers.values())

    mark, logged = harness.mark(), len(harness.api.log)
    await harness.restart()
    assert_nothing_per_certificate(harness, "restart", certificates, mark, logged)
    assert_unchanged(harness, statuses, timers)
    await assert_renewals_read_nothing(harness, statuses)


async def test_a_standby_that_takes_over_reads_and_writes_nothing_per_certificate(harness: Harness) -> None:
    """The standby watched the Certificates being created and issued (it saw every event, it reconciled nothing)."""
    standby = await harness.start_standby()
    certificates = names()
    statuses = await issue_all(harness, certificates)
    timers = renewal_timers(harness, certificates)

    mark, logged = harness.mark(), len(harness.api.log)
    await harness.take_over(standby)
    assert_nothing_per_certificate(harness, "standby takeover", certificates, mark, logged)
    assert_unchanged(harness, statuses, timers)
    await assert_renewals_read_nothing(harness, statuses)


async def test_a_standby_that_started_after_the_issuance_reads_and_writes_nothing_per_certificate(
    harness: Harness,
) -> None:
    """Its watches listed the Certificates and Secrets as they are (a replica added later, or restarted)."""
    certificates = names()
    statuses = await issue_all(harness, certificates)
    timers = renewal_timers(harness, certificates)
    standby = await harness.start_standby()

    mark, logged = harness.mark(), len(harness.api.log)
    await harness.take_over(standby)
    assert_nothing_per_certificate(harness, "standby takeover", certificates, mark, logged)
    assert_unchanged(harness, statuses, timers)


async def restart_requests(root_ca: CAPair, count: int) -> Requests:
    """The requests of one restart over ``count`` settled Certificates, in a control plane of their own."""
    async with running_harness(root_ca) as h:
        await issue_all(h, names(count))
        mark = h.mark()
        await h.restart()
        return h.since(mark)


async def test_the_requests_of_a_restart_do_not_grow_with_the_number_of_certificates(root_ca: CAPair) -> None:
    """Every request counted, reads included: what a restart asks with 2N Certificates minus what it asks with N, per
    Certificate, is nothing (a few lists, watches and the issuer's checks, whatever the number of Certificates)."""
    small, large = await restart_requests(root_ca, COUNT // 2), await restart_requests(root_ca, COUNT)
    per_certificate = {
        f"{verb} {resource}": (large.get((verb, resource), 0) - small.get((verb, resource), 0)) / (COUNT - COUNT // 2)
        for verb, resource in sorted(set(small) | set(large))
    }
    print(f"\nrestart requests with {COUNT // 2} Certificates: {sorted(small.items())}")
    print(f"restart requests with {COUNT} Certificates: {sorted(large.items())}")
    print(f"restart requests per Certificate: {per_certificate}")
    assert all(n == 0 for n in per_certificate.values()), per_certificate


# -- what changed while no operator led is read and judged again ------------------------------------------------------


def only_reads_of(reads: collections.Counter[str], name: str) -> None:
    """The changed Certificate's Secret was read exactly once (not once more, e.g. after its issuer's first check at the
    start), and no other Certificate's Secret at all."""
    assert reads == {secret_of(name): 1}, f"expected one read of {secret_of(name)}'s Secret only, got {dict(reads)}"


async def restart_after(harness: Harness, change: Any) -> tuple[Requests, collections.Counter[str]]:
    """Stop the operator, ``change()`` the cluster as a person would meanwhile, start a new one: its requests and the
    Certificate Secrets it read."""
    await harness.stop()
    change()
    mark, logged = harness.mark(), len(harness.api.log)
    await harness.restart()
    return harness.since(mark), certificate_secrets_read(harness, logged)


async def test_a_secret_whose_metadata_changed_while_down_is_read_and_repaired_without_reissuing(
    harness: Harness,
) -> None:
    certificates = names()
    statuses = await issue_all(harness, certificates)
    changed = certificates[3]

    def drop_labels_and_annotations() -> None:
        # `kubectl edit` of certmint's metadata: another resourceVersion, the certificate itself untouched.
        secret = harness.secret(secret_of(changed))
        assert secret is not None
        meta = secret["metadata"]
        removed = {k: None for k in meta.get("annotations") or {}}
        harness.patch("Secret", NAMESPACE, secret_of(changed), {"metadata": {"annotations": removed}})

    before = harness.secret(secret_of(changed))
    requests, reads = await restart_after(harness, drop_labels_and_annotations)
    print(f"\n{report('restart after a Secret edit', COUNT, requests, reads)}")
    only_reads_of(reads, changed)
    assert requests.get(("patch", "secrets")) == 1, requests
    assert ("create", "certificaterequests") not in requests, requests
    repaired = harness.secret(secret_of(changed))
    assert before is not None and repaired is not None
    assert repaired["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert repaired["data"] == before["data"]
    for name in certificates:
        assert harness.certificate(name)["status"]["serialNumber"] == statuses[name]["serialNumber"], name


async def test_a_secret_whose_key_was_replaced_while_down_is_read_and_reissued(harness: Harness) -> None:
    certificates = names()
    statuses = await issue_all(harness, certificates)
    changed = certificates[5]

    def replace_the_key() -> None:
        other = generate_private_key("ECDSA", 256)
        pem = base64.b64encode(encode_private_key(other, "PKCS1")).decode()
        harness.patch("Secret", NAMESPACE, secret_of(changed), {"data": {"tls.key": pem}})

    requests, reads = await restart_after(harness, replace_the_key)
    print(f"\n{report('restart after a Secret key change', COUNT, requests, reads)}")
    only_reads_of(reads, changed)
    assert requests.get(("create", "certificaterequests")) == 1, requests
    status = harness.certificate(changed)["status"]
    assert status["revision"] == 2 and status["serialNumber"] != statuses[changed]["serialNumber"]
    data = harness.secret_data(secret_of(changed))
    assert public_key_matches(load_private_key(data["tls.key"]), load_pem_chain(data["tls.crt"])[0])
    assert_statuses_unchanged(harness, statuses, but=changed)


async def test_a_secret_deleted_while_down_is_issued_again(harness: Harness) -> None:
    certificates = names()
    statuses = await issue_all(harness, certificates)
    gone = certificates[7]
    requests, reads = await restart_after(harness, lambda: harness.delete("Secret", NAMESPACE, secret_of(gone)))
    print(f"\n{report('restart after a Secret deletion', COUNT, requests, reads)}")
    assert not reads  # the Secret list said it is not there
    assert requests.get(("create", "secrets")) == 1, requests
    assert harness.certificate(gone)["status"]["revision"] == 2
    assert harness.secret(secret_of(gone)) is not None
    assert_statuses_unchanged(harness, statuses, but=gone)


async def test_a_certificate_whose_spec_changed_while_down_is_read_and_judged_again(harness: Harness) -> None:
    certificates = names()
    statuses = await issue_all(harness, certificates)
    changed = certificates[11]
    new_name = f"{changed}.other.{NAMESPACE}.svc"

    def add_a_dns_name() -> None:
        harness.patch(
            "Certificate", NAMESPACE, changed, {"spec": {"dnsNames": [f"{changed}.{NAMESPACE}.svc", new_name]}}
        )

    requests, reads = await restart_after(harness, add_a_dns_name)
    print(f"\n{report('restart after a spec change', COUNT, requests, reads)}")
    only_reads_of(reads, changed)
    cert = harness.certificate(changed)
    assert cert["metadata"]["generation"] == 2 and cert["status"]["observedGeneration"] == 2
    assert cert["status"]["revision"] == 2
    leaf = load_pem_chain(harness.secret_data(secret_of(changed))["tls.crt"])[0]
    assert new_name in certificate_facts(leaf).dns_names
    assert_statuses_unchanged(harness, statuses, but=changed)


def crash() -> None:
    raise Crash


async def test_a_certificate_whose_status_was_never_written_is_read_and_its_status_written(harness: Harness) -> None:
    """The operator died between the Secret write and the status write of one Certificate: its status says nothing
    (not Ready), so its Secret is read; the certificate in it is good, so nothing is issued again."""
    certificates = names()
    statuses = await issue_all(harness, certificates)
    late = "late"
    harness.api.before("patch", "certificates/status", crash)
    harness.create(certificate(late, NAMESPACE, issuer_name=CA_ISSUER, duration="24h"))
    with pytest.raises(AssertionError, match="work-queue task ended"):
        await harness.settle()
    assert "status" not in harness.certificate(late) and harness.secret(secret_of(late)) is not None
    stored = harness.secret_data(secret_of(late))

    requests, reads = await restart_after(harness, lambda: None)
    print(f"\n{report('restart after a crash before a status write', COUNT + 1, requests, reads)}")
    only_reads_of(reads, late)
    assert ("create", "certificaterequests") not in requests, requests
    cert = harness.certificate(late)
    assert condition(cert, "Ready")["status"] == "True" and cert["status"]["revision"] == 1
    assert harness.secret_data(secret_of(late)) == stored
    assert_statuses_unchanged(harness, statuses)


async def test_a_certificate_that_is_not_ready_is_read_and_issued_once_its_issuer_can(
    harness: Harness, root_ca: CAPair
) -> None:
    """A Certificate of another CA issuer expired while that issuer had lost its CA Secret (Ready False); the CA Secret
    came back while the operator was down: the restart reads that Certificate's Secret and issues it again."""
    certificates = names()
    await issue_all(harness, certificates)
    spare_ca = build_ca("Spare CA")
    harness.create(ca_secret("spare-ca-key-pair", OPERATOR_NAMESPACE, spare_ca))
    harness.create(cluster_issuer("spare-ca", ca_secret="spare-ca-key-pair"))
    await harness.settle()
    stale = "stale"
    first = await harness.issued(stale, issuer="spare-ca", duration="1h")
    harness.delete("Secret", OPERATOR_NAMESPACE, "spare-ca-key-pair")
    await harness.advance_to(parse_rfc3339(first["notAfter"]) + datetime.timedelta(minutes=1))
    ready = condition(harness.certificate(stale), "Ready")
    assert ready["status"] == "False", ready
    statuses = {name: harness.certificate(name)["status"] for name in certificates}

    requests, reads = await restart_after(
        harness, lambda: harness.create(ca_secret("spare-ca-key-pair", OPERATOR_NAMESPACE, spare_ca))
    )
    print(f"\n{report('restart with one Certificate not Ready', COUNT + 1, requests, reads)}")
    reads.pop("spare-ca-key-pair", None)  # its issuer's CA Secret, read by the issuer's check, not per Certificate
    only_reads_of(reads, stale)
    cert = harness.certificate(stale)
    assert condition(cert, "Ready")["status"] == "True" and cert["status"]["revision"] == 2
    assert_statuses_unchanged(harness, statuses)


async def test_certificates_of_an_issuer_whose_ca_changed_while_down_are_issued_again(
    harness: Harness, root_ca: CAPair
) -> None:
    """The issuer is not the one their status was settled with: every one of its Certificates is judged again. The
    new CA is under a new root, which the restarted issuer finds in its CA Secret instead of the root its status
    lists: the new root is announced first (both in every ca.crt, nothing re-issued), then signed under."""
    certificates = names()
    statuses = await issue_all(harness, certificates)
    new_ca = build_ca("Replacement Root CA")

    def replace_the_ca() -> None:
        fresh = ca_secret(CA_SECRET, OPERATOR_NAMESPACE, new_ca)
        harness.patch("Secret", OPERATOR_NAMESPACE, CA_SECRET, {"data": fresh["data"]})

    requests, _ = await restart_after(harness, replace_the_ca)
    print(f"\n{report('restart after the CA changed', COUNT, requests, collections.Counter())}")
    for name in certificates:
        data = harness.secret_data(secret_of(name))
        assert data["ca.crt"] == new_ca.cert_pem + root_ca.cert_pem, name
        assert harness.certificate(name)["status"]["serialNumber"] == statuses[name]["serialNumber"], name
    await pass_time(harness, 2 * harness.settings.trust_propagation_seconds)
    for name in certificates:
        status = harness.certificate(name)["status"]
        assert status["revision"] == 2 and status["serialNumber"] != statuses[name]["serialNumber"], name
        leaf = load_pem_chain(harness.secret_data(secret_of(name))["tls.crt"])[0]
        assert leaf.issuer == new_ca.cert.subject, name
