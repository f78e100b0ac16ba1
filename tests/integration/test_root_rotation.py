"""A root rotation of certmint's own root CA Certificate against the real API server, the operator SIGKILLed in each
phase (issue 14, "Crash safety").

N Certificates under a CA Issuer on a certmint root; the root is re-issued with a new key, and the operator is killed
(SIGKILL, then a new process) in one of the phases:

- ``staged``: the next root is in every ca.crt, nothing is signed by it yet (issuer phase NextRootStaged);
- ``reissuing``: the root has switched and a third of the certificates are re-issued under it, the rest wait for their
  spread time (PreviousRootRetiring, before the spread window ends);
- ``retiring``: every certificate is re-issued, the old root waits in every ca.crt for its retirement time
  (PreviousRootRetiring, after the spread).

A :class:`~tests.integration.rotation_watch.RotationWatch` follows every state of the Secrets from before the rotation
to its end and checks each one: every certificate in use (each certificate's leaf, and the CA Secret's root) is signed
by a CA that is in the ca.crt of EVERY Secret of the issuer (the CA Secret and each certificate's), at that revision.
Asserted after the run: no state broke that; the new process resumed the phase it was killed in (the CA Secret's
root-switch-at and root-retire-at annotations each took one value, the same before and after the kill; no second
root was staged; the switch and the retirement came no earlier than those annotations say); the rotation completed
(the old root left every ca.crt, every certificate is signed by the new one); and each certificate was re-issued
exactly once (two leaf serials seen in its Secret, status.revision 2). Printed: when each phase came, the re-issues per
second at their peak, and the two margins of the invariant (trust ahead of signing; signing ahead of retirement).

The operator here watches only the test's namespace (its own Issuers, no ClusterIssuer) with a short propagation time
(CERTMINT_TRUST_PROPAGATION_SECONDS).
"""

from __future__ import annotations

import base64
import collections
import datetime
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from kubernetes import client

from certmint.core.decisions import ROOT_RETIRE_AT, ROOT_SWITCH_AT
from certmint.pki.timestamps import parse_rfc3339
from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import Certmint, certificate, issuer, unique
from tests.integration.replicas import FAST_LEASE, stand_ins
from tests.integration.rotation_watch import RotationWatch, fingerprint
from tests.x509util import certificate_builder, common_name

pytestmark = pytest.mark.integration

COUNT = 60
PROPAGATION_S = 8.0
ROOT = "rotated-root"
CA_SECRET = f"{ROOT}-tls"
MESH = "mesh"


@pytest.fixture
def namespace(api: client.ApiClient) -> str:
    return Certmint(api).namespace(unique("rotation"))


@pytest.fixture
def rotating(control_plane: ControlPlane, operator: OperatorProcess, namespace: str) -> Iterator[OperatorProcess]:
    env = {
        **FAST_LEASE,
        "CERTMINT_WATCH_NAMESPACES": namespace,
        "CERTMINT_TRUST_PROPAGATION_SECONDS": str(PROPAGATION_S),
        "CERTMINT_ISSUER_RECHECK_SECONDS": "3600",
    }
    with stand_ins(control_plane, operator, [env], first_run=600) as (op,):
        yield op


@dataclass(frozen=True)
class KillPoint:
    """Where in the rotation the operator is killed: the issuer's status.rotation phase then, and the CA Secret
    annotation that records it."""

    phase: str
    annotation: str


KILL_POINTS = {
    "staged": KillPoint("NextRootStaged", ROOT_SWITCH_AT),
    "reissuing": KillPoint("PreviousRootRetiring", ROOT_RETIRE_AT),
    "retiring": KillPoint("PreviousRootRetiring", ROOT_RETIRE_AT),
}


def _mesh(cm: Certmint, namespace: str) -> list[str]:
    """A root Certificate, a CA Issuer on its Secret and COUNT Certificates of that issuer, all Ready; their Secrets."""
    cm.create(issuer("bootstrap", namespace))
    root_spec: dict[str, Any] = {"isCA": True, "commonName": "Rotated Root CA", "duration": "720h"}
    cm.create(certificate(ROOT, namespace, issuer_name="bootstrap", issuer_kind="Issuer", **root_spec))
    cm.wait_ready("Certificate", ROOT, namespace, timeout=60)
    cm.create(issuer(MESH, namespace, ca_secret=CA_SECRET))
    cm.wait_ready("Issuer", MESH, namespace, timeout=60)
    names = [f"svc-{i:03d}" for i in range(COUNT)]
    for name in names:
        cm.create(certificate(name, namespace, issuer_name=MESH, issuer_kind="Issuer", duration="2h"))
    for name in names:
        cm.wait_ready("Certificate", name, namespace, timeout=120)
    return names


def _monotonic(rfc3339: str) -> float:
    """An RFC 3339 time of the operator's (same machine, same clock) on this process's time.monotonic() scale."""
    return parse_rfc3339(rfc3339).timestamp() - time.time() + time.monotonic()


@pytest.mark.parametrize("killed_in", list(KILL_POINTS))
def test_a_root_rotation_resumes_the_phase_the_operator_was_killed_in(
    api: client.ApiClient, namespace: str, rotating: OperatorProcess, killed_in: str
) -> None:
    cm = Certmint(api)
    names = _mesh(cm, namespace)
    secrets = [f"{name}-tls" for name in names]
    kill_point = KILL_POINTS[killed_in]
    with RotationWatch(api, namespace, CA_SECRET, secrets, tracked=(ROOT_SWITCH_AT, ROOT_RETIRE_AT)) as seen:
        old_root = seen.signer(CA_SECRET)
        assert old_root is not None and all(seen.signer(s) == old_root for s in secrets)

        # Stage: the next root reaches every ca.crt, nothing is signed by it.
        t0 = time.monotonic()
        cm.patch("Certificate", ROOT, namespace, {"spec": {"duration": "700h"}})
        next_root = seen.wait(seen.staged_root, "the next root to be staged", timeout=30)
        seen.wait(
            lambda: all(next_root in seen.anchors(s) for s in [CA_SECRET, *secrets]),
            "every ca.crt to hold the next root",
            timeout=PROPAGATION_S,
        )

        # The kill point.
        if killed_in == "reissuing":
            seen.wait(
                lambda: len(seen.signed_by(next_root, secrets)) >= COUNT // 3,
                f"{COUNT // 3} certificates re-issued under the next root",
                timeout=3 * PROPAGATION_S,
            )
        elif killed_in == "retiring":
            seen.wait(
                lambda: len(seen.signed_by(next_root, secrets)) == COUNT,
                "every certificate re-issued under the next root",
                timeout=4 * PROPAGATION_S,
            )
        at_kill = seen.annotation(CA_SECRET, kill_point.annotation)
        reissued_at_kill = len(seen.signed_by(next_root, secrets))
        rotation = cm.get("Issuer", MESH, namespace)["status"].get("rotation")
        rotating.kill()
        killed_s = time.monotonic() - t0
        assert at_kill is not None, f"killed in {killed_in}, but the CA Secret has no {kill_point.annotation}"
        assert rotation == {"phase": kill_point.phase, "nextStepAt": at_kill}, rotation
        assert old_root in seen.anchors(CA_SECRET), "killed after the retirement"
        if killed_in == "staged":
            assert seen.signer(CA_SECRET) == old_root and reissued_at_kill == 0
        elif killed_in == "reissuing":
            assert 0 < reissued_at_kill < COUNT, f"killed with {reissued_at_kill} certificates re-issued"
        rotating.start()
        restarted_s = time.monotonic() - t0

        # The new process completes the rotation: every certificate under the next root, the old root retired.
        def completed() -> bool:
            return len(seen.signed_by(next_root, [CA_SECRET, *secrets])) == COUNT + 1 and all(
                seen.anchors(s) == {next_root} for s in [CA_SECRET, *secrets]
            )

        seen.wait(completed, "every certificate under the next root and the old root retired", 8 * PROPAGATION_S + 60)

    assert seen.gaps == 0 and seen.error is None, (seen.gaps, seen.error)
    assert not seen.violations, f"{seen.violating_states} of {seen.states} states broke the invariant: " + "; ".join(
        map(str, seen.violations)
    )
    # The same phase resumed: one staged root, one switch time, one retirement time, each kept across the kill.
    assert seen.staged_roots == [next_root] and seen.ca_roots == [old_root, next_root], (
        seen.staged_roots,
        seen.ca_roots,
    )
    switch_at, retire_at = (seen.annotation_values[k] for k in (ROOT_SWITCH_AT, ROOT_RETIRE_AT))
    assert len(switch_at) == 3 and switch_at[0] is None and switch_at[2] is None, switch_at
    assert len(retire_at) == 3 and retire_at[0] is None and retire_at[2] is None, retire_at
    assert at_kill in (switch_at[1], retire_at[1])
    switch_s = seen.first_use_at[next_root] - t0
    retired_s = seen.dropped_at[old_root] - t0
    assert switch_s >= _monotonic(str(switch_at[1])) - t0, "switched before its time"
    assert retired_s >= _monotonic(str(retire_at[1])) - t0, "retired before its time"
    # Each certificate re-issued once by the rotation, the root once.
    twice = {s: serials for s, serials in seen.serials.items() if s != CA_SECRET and len(serials) != 2}
    assert not twice, f"leaf serials seen other than [before, after]: {twice}"
    revisions = {n: cm.get("Certificate", n, namespace)["status"]["revision"] for n in [ROOT, *names]}
    assert set(revisions.values()) == {2}, {n: r for n, r in revisions.items() if r != 2}

    reissued = sorted(seen.signed_at[(s, next_root)] - t0 for s in secrets)
    per_second = collections.Counter(int(t) for t in reissued)
    announced_s = seen.everywhere_at[next_root] - t0
    trust_ahead = seen.first_use_at[next_root] - seen.everywhere_at[next_root]
    signing_ahead = seen.dropped_at[old_root] - seen.last_use_ended_at[old_root]
    print(
        f"\nroot rotation, {COUNT} certificates, propagation {PROPAGATION_S:g}s, operator SIGKILLed {killed_in} "
        f"at {killed_s:.1f}s ({reissued_at_kill} re-issued), ready again {restarted_s:.1f}s: "
        f"next root in every ca.crt {announced_s:.1f}s, switched {switch_s:.1f}s, "
        f"re-issued {reissued[0]:.1f}-{reissued[-1]:.1f}s (peak {max(per_second.values())}/s), "
        f"old root retired {retired_s:.1f}s; {seen.states} states checked, trust ahead of signing by "
        f"{trust_ahead:.1f}s, the last leaf of the old root replaced {signing_ahead:.1f}s before its retirement"
    )
    assert trust_ahead >= PROPAGATION_S / 2, f"the switch came {trust_ahead:.1f}s after every ca.crt had the root"
    assert reissued[-1] - reissued[0] >= PROPAGATION_S / 3, reissued  # spread out, not one burst


# -- the checker itself, fed states by hand -------------------------------------------------------------------


Signer = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _root() -> Signer:
    """A root named like every other one here (as a rotated root is): only its key tells them apart."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = certificate_builder(common_name("Root"), key.public_key(), now, now + datetime.timedelta(hours=1))
    ca = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return ca.sign(key, hashes.SHA256()), key


def _leaf(name: str, signer: Signer) -> x509.Certificate:
    ca, ca_key = signer
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    end = now + datetime.timedelta(hours=1)
    builder = certificate_builder(common_name(name), key.public_key(), now, end, issuer=ca.subject)
    return builder.sign(ca_key, hashes.SHA256())


class HandFed:
    """States fed to a :class:`RotationWatch` one Secret write at a time, as the API server would send them."""

    def __init__(self, secrets: list[str]) -> None:
        self.watch = RotationWatch(client.ApiClient(), "ns", "ca-tls", secrets)
        self.rv = 0

    def write(self, name: str, tls: x509.Certificate, ca_crt: list[x509.Certificate]) -> None:
        self.rv += 1
        pem = {"tls.crt": tls, "ca.crt": ca_crt}
        data = {
            key: base64.b64encode(b"".join(c.public_bytes(Encoding.PEM) for c in ([v] if key == "tls.crt" else v)))
            for key, v in pem.items()
        }
        meta = {"name": name, "resourceVersion": str(self.rv)}
        self.watch.observe("MODIFIED", {"metadata": meta, "data": {k: v.decode() for k, v in data.items()}})

    def violations(self) -> list[tuple[str, str, tuple[str, ...]]]:
        return [(v.secret, v.signer, v.missing_from) for v in self.watch.violations]


@pytest.mark.parametrize("broken", [None, "switch before every ca.crt has the root", "retire before the last leaf"])
def test_the_watch_flags_a_state_where_a_signer_is_missing_from_one_trust_set(broken: str | None) -> None:
    """A rotation written in the right order gives no violation; a switch while one certificate's ca.crt still lacks
    the next root, or the old root retired from the CA Secret's ca.crt while one leaf signed by it is still in use,
    gives exactly one violating state, naming the Secret in use and the trust set that lacks its signer."""
    old, new = _root(), _root()
    fed = HandFed(["a-tls", "b-tls"])
    a_old, b_old, a_new, b_new = (_leaf(n, r) for r in (old, new) for n in ("a", "b"))
    fed.write("ca-tls", old[0], [old[0]])
    fed.write("a-tls", a_old, [old[0]])
    fed.write("b-tls", b_old, [old[0]])
    both = [old[0], new[0]]
    fed.write("ca-tls", old[0], both)  # staged
    fed.write("a-tls", a_old, both)
    if broken == "switch before every ca.crt has the root":
        fed.write("ca-tls", new[0], both)
        assert fed.violations() == [("ca-tls", fingerprint(new[0]), ("b-tls",))]
        return
    fed.write("b-tls", b_old, both)
    fed.write("ca-tls", new[0], both)  # switched
    fed.write("a-tls", a_new, both)
    if broken == "retire before the last leaf":
        fed.write("ca-tls", new[0], [new[0]])
        assert fed.violations() == [("b-tls", fingerprint(old[0]), ("ca-tls",))]
        return
    fed.write("b-tls", b_new, both)
    for name, tls in (("ca-tls", new[0]), ("a-tls", a_new), ("b-tls", b_new)):
        fed.write(name, tls, [new[0]])  # retired
    assert fed.violations() == [] and fed.watch.states == 12
    assert fed.watch.serials == {"ca-tls": [format(c.serial_number, "x") for c in (old[0], new[0])]} | {
        f"{n}-tls": [format(c.serial_number, "x") for c in pair]
        for n, pair in (("a", (a_old, a_new)), ("b", (b_old, b_new)))
    }
