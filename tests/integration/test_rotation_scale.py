"""A root rotation at scale against the real API server (issue 14, "Done means"): 1,000 Certificates under a CA
ClusterIssuer on a certmint root, and a Bundle of that issuer's anchors in 500 namespaces.

Measured and printed: how long the Bundle takes to reach 500 namespaces and the API requests it used; after the
root is asked to rotate, when every ConfigMap holds the next root, when the switch came, how the re-issues of the
1,000 leaves spread (window, peak per second against CERTMINT_ROTATION_REISSUE_RATE), and when the old root left
every ConfigMap. Asserted: the next root reaches every ConfigMap before any leaf is signed under it; every leaf
is re-issued once, inside the re-issue window (with slack for the work queue); renewals that fall due meanwhile
are not held back by the rotation; the old root leaves the ConfigMaps only after the last leaf under it is gone.
"""

from __future__ import annotations

import base64
import collections
import datetime
import time
from collections.abc import Iterator

import pytest
from cryptography import x509
from kubernetes import client

from certmint.pki.inspect import authority_key_id, load_pem_chain, subject_key_id
from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, certificate, cluster_issuer, unique
from tests.integration.conftest import OPERATOR_NAMESPACE
from tests.integration.kubeutil import wait_for
from tests.integration.replicas import stand_ins

pytestmark = pytest.mark.integration

LEAVES = 1000
DUE = 20  # Certificates whose renewal falls due during the rotation
NAMESPACES = 500
PROPAGATION_S = 10.0
RATE = 25.0  # re-issues per second: 1,000 over 40 s, longer than the propagation time
WINDOW_S = max(PROPAGATION_S, LEAVES / RATE)
SLACK_S = 10.0  # the work queue's lag on top of the planned time, at most
# Re-issuing a leaf in a rotation costs the operator and the API server about three times the API work of its first
# issuance (docs/performance.md: per leaf 2.5 Secret patches, 3.5 status patches, 4.6 Secret GETs), while this test
# lists the 1,000 Secrets twice a second: where the machine cannot keep RATE, the spread is bounded by the operator's
# own pace instead, at most this many times the first issuance of the LEAVES (same test, same machine).
REISSUE_COST = 3.0
LAG_BUDGET_S = 5.0  # a renewal that falls due is issued at most this late
LABEL = "certmint-test/scale"


@pytest.fixture
def scaled(control_plane: ControlPlane, operator: OperatorProcess) -> Iterator[OperatorProcess]:
    env = {
        "CERTMINT_TRUST_PROPAGATION_SECONDS": str(PROPAGATION_S),
        "CERTMINT_ROTATION_REISSUE_RATE": str(RATE),
        "CERTMINT_ISSUER_RECHECK_SECONDS": "3600",
        "CERTMINT_POST_EVENTS": "false",
        "CERTMINT_JITTER_FRACTION": "0",  # renewal times exactly as renewBefore says
    }
    with stand_ins(control_plane, operator, [env], first_run=700) as (op,):
        yield op


def _key_ids(pem: str | bytes) -> set[str]:
    data = pem.encode() if isinstance(pem, str) else pem
    return {subject_key_id(c) or "" for c in load_pem_chain(data)} if data else set()


def _leaf_issuer(data: dict[str, str]) -> tuple[str, str]:
    cert = x509.load_pem_x509_certificates(base64.b64decode(data["tls.crt"]))[0]
    return format(cert.serial_number, "x"), authority_key_id(cert) or ""


def test_a_root_rotation_with_1000_certificates_and_a_bundle_in_500_namespaces(
    api: client.ApiClient, scaled: OperatorProcess, request: pytest.FixtureRequest
) -> None:
    cm, core = Certmint(api), client.CoreV1Api(api)
    root = unique("scale-root")
    cm.create(cluster_issuer(f"{root}-selfsigned"))
    cm.create(
        certificate(
            root, OPERATOR_NAMESPACE, issuer_name=f"{root}-selfsigned", commonName=f"{root}", isCA=True, duration="24h"
        )
    )
    cm.wait_ready("Certificate", root, OPERATOR_NAMESPACE)
    cm.create(cluster_issuer(root, ca_secret=f"{root}-tls"))
    cm.wait_ready("ClusterIssuer", root)
    old_root = _key_ids(cm.secret_data(f"{root}-tls", OPERATOR_NAMESPACE)["tls.crt"])
    assert len(old_root) == 1

    # 1,000 leaves.
    ns = cm.namespace(unique("scale"))
    started = time.monotonic()
    for i in range(LEAVES):
        cm.create(certificate(f"leaf-{i}", ns, issuer_kind="ClusterIssuer", issuer_name=root, duration="2h"))

    def all_ready() -> bool:
        items = cm.items("Certificate", ns)
        return len(items) == LEAVES and all(
            any(
                c["type"] == "Ready" and c["status"] == "True" for c in (it.get("status") or {}).get("conditions") or []
            )
            for it in items
        )

    wait_for(all_ready, f"{LEAVES} Certificates Ready", timeout=180, interval=1.0)
    issued_s = time.monotonic() - started
    print(f"\n{LEAVES} certificates issued in {issued_s:.1f} s")

    # A Bundle of the issuer's anchors in 500 namespaces.
    targets = [f"{unique('scale-ns')}" for _ in range(NAMESPACES)]
    for name in targets:
        core.create_namespace({"metadata": {"name": name, "labels": {LABEL: root}}})
    before = scaled.metrics()
    started = time.monotonic()
    bundle = unique("scale-trust")
    cm.create(
        {
            "apiVersion": "certmint.dev/v1alpha1",
            "kind": "Bundle",
            "metadata": {"name": bundle},
            "spec": {
                "sources": [{"issuer": {"name": root}}],
                "target": {"configMap": {"key": "ca.crt"}, "namespaceSelector": {"matchLabels": {LABEL: root}}},
            },
        }
    )

    def in_sync() -> bool:
        status = cm.get("Bundle", bundle).get("status") or {}
        return any(t.get("inSync") == NAMESPACES for t in status.get("targets") or [])

    request.addfinalizer(lambda: cm.delete("Bundle", bundle))  # its ConfigMaps go with it
    wait_for(in_sync, f"Bundle {bundle} in {NAMESPACES} namespaces", timeout=120, interval=0.2)
    spent = scaled.metrics() - before
    requests = spent.by("certmint_api_requests_total", "verb", "resource")
    print(
        f"Bundle reached {NAMESPACES} namespaces in {time.monotonic() - started:.1f} s; API requests: "
        + ", ".join(f"{k} {int(v)}" for k, v in sorted(requests.items()) if v)
    )

    def config_maps() -> dict[str, set[str]]:
        listed = core.list_config_map_for_all_namespaces(label_selector=f"certmint.dev/bundle={bundle}")
        return {item.metadata.namespace: _key_ids((item.data or {}).get("ca.crt", "")) for item in listed.items}

    assert all(ids == old_root for ids in config_maps().values())

    # Renewals that fall due during the rotation: issued now, due about 30 s later (a tenth of the lifetime).
    due_ns = cm.namespace(unique("scale-due"))
    for i in range(DUE):
        cm.create(
            certificate(
                f"due-{i}",
                due_ns,
                issuer_kind="ClusterIssuer",
                issuer_name=root,
                duration="5m",
                renewBefore="4m30s",
                # Renewed every 30 s: over a slow rotation more than the default 3 revisions, and the check below
                # reads each one's revision-2 CertificateRequest, which the default limit would have deleted.
                revisionHistoryLimit=20,
            )
        )
    wait_for(
        lambda: len([c for c in cm.items("Certificate", due_ns) if (c.get("status") or {}).get("renewalTime")]) == DUE,
        "due Certificates issued",
        timeout=60,
    )
    renewal_at = {c["metadata"]["name"]: c["status"]["renewalTime"] for c in cm.items("Certificate", due_ns)}
    due_serials = {c["metadata"]["name"]: c["status"]["serialNumber"] for c in cm.items("Certificate", due_ns)}

    # Rotate the root.
    before = scaled.metrics()
    t0 = time.monotonic()
    wall0 = time.time()
    cm.patch(
        "Certificate", root, OPERATOR_NAMESPACE, {"metadata": {"annotations": {"certmint.dev/renew-request": "scale"}}}
    )
    reissued: dict[str, float] = {}  # leaf → seconds after t0 when first seen under a new root
    serials: dict[str, set[str]] = collections.defaultdict(set)
    due_renewed: dict[str, float] = {}
    announced = retired = None
    violations: list[str] = []
    new_root: set[str] = set()
    deadline = t0 + PROPAGATION_S + WINDOW_S + 3 * PROPAGATION_S + 60
    polls = 0
    while time.monotonic() < deadline:
        now = time.monotonic() - t0
        polls += 1
        maps = config_maps()
        everywhere = set.intersection(*maps.values()) if maps else set()
        if announced is None and len(everywhere) == 2:
            announced = now
            new_root = everywhere - old_root
        retiring = retired is None and bool(new_root) and bool(maps) and all(ids == new_root for ids in maps.values())
        # Listing 1,000 Secrets costs the API server (sharing the 2 cores) more than the ConfigMaps: every 4th poll,
        # and when the old root has just left the ConfigMaps (what is under it then was under it before too).
        listed = polls % 4 == 0 or retiring
        secrets = (
            core.list_namespaced_secret(ns, label_selector="certmint.dev/certificate-name").items if listed else []
        )
        for s in secrets:
            serial, issuer = _leaf_issuer(s.data)
            serials[s.metadata.name].add(serial)
            if issuer not in old_root and s.metadata.name not in reissued:
                reissued[s.metadata.name] = now
                if issuer not in everywhere:
                    violations.append(
                        f"{s.metadata.name} signed by {issuer} at {now:.1f} s; ConfigMaps trust {everywhere}"
                    )
        for c in cm.items("Certificate", due_ns):
            name = c["metadata"]["name"]
            if name not in due_renewed and (c.get("status") or {}).get("serialNumber") != due_serials[name]:
                due_renewed[name] = time.time()
        if retiring:
            retired = now
            if len(reissued) < LEAVES:
                violations.append(
                    f"old root retired at {now:.1f} s with {LEAVES - len(reissued)} leaves still under it"
                )
        if retired is not None and len(reissued) == LEAVES and len(due_renewed) == DUE:
            break
        time.sleep(0.5)
    spent = scaled.metrics() - before

    assert announced is not None, "the next root never reached every ConfigMap"
    assert len(reissued) == LEAVES, f"{LEAVES - len(reissued)} leaves never re-issued"
    assert retired is not None, "the old root was never retired from the ConfigMaps"
    assert not violations, violations[:5]
    twice = [name for name, seen in serials.items() if name.startswith("leaf-") and len(seen) > 2]
    assert not twice, f"re-issued more than once by the rotation: {twice[:5]}"
    # When, as the API server saw it (1 s resolution): the rotation's CertificateRequests by creation time.
    created = [
        _epoch(r["metadata"]["creationTimestamp"]) - wall0
        for r in cm.items("CertificateRequest", ns)
        if _epoch(r["metadata"]["creationTimestamp"]) >= int(wall0)
    ]
    assert len(created) == LEAVES, f"{len(created)} CertificateRequests for {LEAVES} leaves"
    switched, last = min(created), max(created)
    assert switched >= announced - 1, f"a leaf was requested at {switched:.0f} s, before every ConfigMap had the root"
    # Paced to RATE, or as fast as this machine lets the operator re-issue (a wall-clock limit alone would judge
    # the machine: the same code spread 1,000 leaves over 45 s on one 2-core machine, and over 60-62 s on another
    # where their first issuance took 28.5-37.6 s). The pacing itself is the peak below.
    window_bound = max(WINDOW_S, REISSUE_COST * issued_s) + SLACK_S
    assert last - switched <= window_bound, (switched, last, issued_s)
    per_second = collections.Counter(int(t) for t in created)
    peak = max(per_second.values())
    # Paced to RATE; a second of creationTimestamps may hold a little more (where the seconds fall).
    assert peak <= RATE * 1.2 + 1, per_second
    assert len(due_renewed) == DUE
    # When each was issued again, as the API server saw it: its first CertificateRequest after the first one
    # (creationTimestamp has whole seconds: up to 1 s early).
    requested: dict[str, float] = {}
    for r in cm.items("CertificateRequest", due_ns):
        owner = r["metadata"]["labels"]["certmint.dev/certificate-name"]
        if r["metadata"]["annotations"].get("certmint.dev/certificate-revision") == "2":
            requested[owner] = _epoch(r["metadata"]["creationTimestamp"])
    assert len(requested) == DUE, requested
    by_rotation = [n for n, at in requested.items() if at < _epoch(renewal_at[n]) - 1]
    lateness = {n: at - _epoch(renewal_at[n]) for n, at in requested.items()}
    assert max(lateness.values()) <= LAG_BUDGET_S, lateness
    requests = spent.by("certmint_api_requests_total", "verb", "resource")
    lag = spent.histogram("certmint_scheduler_lag_seconds")
    print(
        f"root rotation, {LEAVES} leaves, Bundle in {NAMESPACES} namespaces, propagation {PROPAGATION_S:.0f} s, "
        f"rate {RATE:.0f}/s (window {WINDOW_S:.0f} s):\n"
        f"  next root in every ConfigMap after {announced:.1f} s; first leaf requested under it {switched:.0f} s; "
        f"last {last:.0f} s ({last - switched:.0f} s after the first); peak {peak} re-issues in one second "
        f"(CertificateRequests created per second; average {LEAVES / max(last - switched, 1):.0f}/s)\n"
        f"  old root gone from every ConfigMap after {retired:.1f} s; {DUE - len(by_rotation)} renewals fell due "
        f"meanwhile and were issued at most {max(lateness.values()):.1f} s after their renewal time "
        f"({len(by_rotation)} were re-issued by the rotation before); "
        f"scheduler lag p99 <= {lag.quantile_bound(0.99)} s\n"
        f"  API requests: " + ", ".join(f"{k} {int(v)}" for k, v in sorted(requests.items()) if v)
    )


def _epoch(rfc3339: str) -> float:
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
