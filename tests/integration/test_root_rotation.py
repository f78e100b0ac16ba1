"""A root rotation of certmint's own root CA Certificate against the real API server, the operator SIGKILLed in each
phase (issue 14, "Crash safety").

N Certificates under a CA Issuer on a certmint root; the root is re-issued with a new key, and the operator is killed
(SIGKILL, then a new process) at one of these points:

- ``announcing``: the root's Secret has just staged the next root, the certificates' ca.crt do not have it yet; the
  operator stays down until the switch time has passed (issuer phase NextRootStaged);
- ``staged``: the next root is in every ca.crt, nothing is signed by it yet (NextRootStaged);
- ``reissuing``: the root has switched and two thirds of the certificates are re-issued under it, the rest wait for
  their spread time (PreviousRootRetiring, inside the spread window);
- ``retiring``: every certificate is re-issued, the old root waits in every ca.crt for its retirement time
  (PreviousRootRetiring, after the spread).

A :class:`~tests.integration.rotation_watch.RotationWatch` rebuilds every state the Secrets went through (one per
write, from a watch) from before the rotation to its end, and checks the invariant in each (the exact check is in the
test's docstring). Asserted after the run: no state broke it; the new process resumed the phase it was killed in; the
rotation completed; each certificate was re-issued exactly once; and the invariant's two margins, in time, were at
least half a propagation delay. Printed: when each phase came, the re-issues per second at their peak, the margins.

Two kill points showed product bugs, fixed since: an operator down past the switch time switched before the next
root had reached every ca.crt ("announcing"), and one restarted in the re-issue window retired the old root right
after the last re-issue ("reissuing").

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
#: The properties checked after each run (named in a failure).
INVARIANT, TRUST_MARGIN, RETIRE_MARGIN = "invariant", "trust margin", "retire margin"


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
    "announcing": KillPoint("NextRootStaged", ROOT_SWITCH_AT),
    "staged": KillPoint("NextRootStaged", ROOT_SWITCH_AT),
    "reissuing": KillPoint("PreviousRootRetiring", ROOT_RETIRE_AT),
    "retiring": KillPoint("PreviousRootRetiring", ROOT_RETIRE_AT),
}


def _mesh(cm: Certmint, namespace: str) -> list[str]:
    """A root Certificate, a CA Issuer on its Secret and COUNT Certificates of that issuer, all Ready; their names."""
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
    """The operator SIGKILLed at ``killed_in``; then, from the Secrets as the API server held them:

    The invariant, checked in every state: a state is the Secrets of the issuer at one resourceVersion (the watch
    applies each write in order, so the one-by-one ca.crt patches of an announcement or a retirement give one state
    each, and a state in the middle of them is checked like any other). Its trust sets are the ca.crt of the CA Secret
    and of every certificate's Secret; its certificates in use are the leaf of every certificate's tls.crt and the CA
    Secret's tls.crt (the CA that signs from then on). The check: each certificate in use is signed by a CA
    certificate that is in EVERY trust set of that state (the same certificate), i.e. for any two Secrets A and B, a
    workload holding B's ca.crt accepts A's certificate. So nothing may be signed by the next root (the switch
    included) until the last ca.crt patch of the announcement has landed, and the first ca.crt patch of the
    retirement may land only once no certificate in use is signed by the old root. A check of each Secret against its
    own ca.crt only would miss both: the operator writes a leaf and its own ca.crt in one patch.

    Its margins: the first state with something signed by the next root comes at least half a propagation delay
    after the first state with the next root in every trust set; the first state without the old root in some trust
    set comes at least half a delay after the last certificate in use signed by it was replaced (a workload loads a
    changed Secret up to a delay later, so these are what the instantaneous check cannot see).

    The same phase resumed: the CA Secret's root-switch-at and root-retire-at annotations each took exactly one value
    (the one seen at the kill for the phase's), one next root was staged and the CA Secret held only the old and that
    one, and the switch and the retirement came no earlier than their annotations. The rotation completed: every
    certificate signed by the next root, every ca.crt the next root alone. Each certificate re-issued once: two leaf
    serials seen in its Secret over the whole rotation, status.revision 2 (the root's too).
    """
    cm = Certmint(api)
    names = _mesh(cm, namespace)
    secrets = [f"{name}-tls" for name in names]
    everyone = [CA_SECRET, *secrets]
    kill_point = KILL_POINTS[killed_in]
    with RotationWatch(api, namespace, CA_SECRET, secrets, tracked=(ROOT_SWITCH_AT, ROOT_RETIRE_AT)) as seen:
        old_root = seen.signer(CA_SECRET)
        assert old_root is not None and all(seen.signer(s) == old_root for s in secrets)

        # Stage: the next root reaches every ca.crt, nothing is signed by it.
        t0 = time.monotonic()
        cm.patch("Certificate", ROOT, namespace, {"spec": {"duration": "700h"}})
        next_root = seen.wait(seen.staged_root, "the next root to be staged", timeout=30)
        if killed_in != "announcing":
            seen.wait(
                lambda: all(next_root in seen.anchors(s) for s in everyone),
                "every ca.crt to hold the next root",
                timeout=PROPAGATION_S,
            )
        if killed_in == "reissuing":
            seen.wait(
                lambda: len(seen.signed_by(next_root, secrets)) >= COUNT * 2 // 3,
                f"{COUNT * 2 // 3} certificates re-issued under the next root",
                timeout=3 * PROPAGATION_S,
            )
        elif killed_in == "retiring":
            seen.wait(
                lambda: len(seen.signed_by(next_root, secrets)) == COUNT,
                "every certificate re-issued under the next root",
                timeout=4 * PROPAGATION_S,
            )

        # The kill: first what the phase is, as the CA Secret and the issuer's status show it.
        at_kill = seen.annotation(CA_SECRET, kill_point.annotation)
        reissued_at_kill = len(seen.signed_by(next_root, secrets))
        announced_at_kill = sum(next_root in seen.anchors(s) for s in secrets)
        rotating.kill()
        killed_s = time.monotonic() - t0
        assert at_kill is not None, f"killed {killed_in}, but the CA Secret has no {kill_point.annotation}"
        assert old_root in seen.anchors(CA_SECRET), "killed after the retirement"
        if killed_in in ("announcing", "staged"):
            assert seen.signer(CA_SECRET) == old_root and reissued_at_kill == 0
        if killed_in == "announcing":
            assert announced_at_kill < COUNT, "killed after the next root reached every ca.crt"
            # Down until the switch time has passed (the scenario, not a wait for a signal): due at the new start.
            time.sleep(max(0.0, _monotonic(at_kill) - time.monotonic()) + 0.5)
        if killed_in == "reissuing":
            assert 0 < reissued_at_kill < COUNT, f"killed with {reissued_at_kill} certificates re-issued"
        if killed_in != "announcing":  # (then the issuer may not have published the phase yet)
            rotation = cm.get("Issuer", MESH, namespace)["status"].get("rotation")
            assert rotation == {"phase": kill_point.phase, "nextStepAt": at_kill}, rotation
        rotating.start()
        restarted_s = time.monotonic() - t0

        # The new process completes the rotation: every certificate under the next root, the old root retired.
        seen.wait(
            lambda: (
                len(seen.staged_roots) > 1  # a second root staged: not the same phase (asserted below)
                or (
                    len(seen.signed_by(next_root, everyone)) == len(everyone)
                    and all(seen.anchors(s) == {next_root} for s in everyone)
                )
            ),
            "every certificate under the next root and the old root retired",
            timeout=8 * PROPAGATION_S + 60,
        )

    assert seen.gaps == 0 and seen.error is None, (seen.gaps, seen.error)
    # The same phase resumed: one staged root, one switch time, one retirement time, each kept across the kill, and
    # neither step earlier than its time.
    assert seen.staged_roots == [next_root] and seen.ca_roots == [old_root, next_root], (
        seen.staged_roots,
        seen.ca_roots,
    )
    # A step may be postponed (its annotation rewritten later, never earlier) while what it waits for is pending:
    # the announcement when the operator was down at the switch time.
    switch_at, retire_at = (seen.annotation_values[k] for k in (ROOT_SWITCH_AT, ROOT_RETIRE_AT))
    for values in (switch_at, retire_at):
        times = values[1:-1]
        assert len(values) >= 3 and values[0] is None and values[-1] is None and None not in times, values
        assert times == sorted(times, key=lambda t: _monotonic(str(t))), f"a step moved earlier: {values}"
    if killed_in == "announcing":
        assert len(switch_at) > 3, (
            f"down past the switch time with the announcement unfinished, not postponed: {switch_at}"
        )
    assert at_kill in (*switch_at, *retire_at)
    switch_s = seen.first_use_at[next_root] - t0
    retired_s = seen.dropped_at[old_root] - t0
    assert switch_s >= _monotonic(str(switch_at[-2])) - t0, "switched before its time"
    assert retired_s >= _monotonic(str(retire_at[-2])) - t0, "retired before its time"
    # Each certificate re-issued once by the rotation, the root once.
    twice = {s: serials for s, serials in seen.serials.items() if s != CA_SECRET and len(serials) != 2}
    assert not twice, f"leaf serials seen other than [before, after]: {twice}"
    revisions = {n: cm.get("Certificate", n, namespace)["status"]["revision"] for n in [ROOT, *names]}
    assert set(revisions.values()) == {2}, {n: r for n, r in revisions.items() if r != 2}
    reissued = sorted(seen.signed_at[(s, next_root)] - t0 for s in secrets)
    assert reissued[-1] - reissued[0] >= PROPAGATION_S / 3, reissued  # spread out, not one burst

    per_second = collections.Counter(int(t) for t in reissued)
    announced_s = seen.everywhere_at[next_root] - t0
    trust_ahead = seen.first_use_at[next_root] - seen.everywhere_at[next_root]
    signing_ahead = seen.dropped_at[old_root] - seen.last_use_ended_at[old_root]
    print(
        f"\nroot rotation, {COUNT} certificates, propagation {PROPAGATION_S:g}s, operator SIGKILLed {killed_in} at "
        f"{killed_s:.1f}s ({announced_at_kill} ca.crt with the next root, {reissued_at_kill} re-issued), started "
        f"again {restarted_s:.1f}s: next root in every ca.crt {announced_s:.1f}s, switched {switch_s:.1f}s, "
        f"re-issued {reissued[0]:.1f}-{reissued[-1]:.1f}s (peak {max(per_second.values())}/s), old root retired "
        f"{retired_s:.1f}s; {seen.states} states checked, {seen.violating_states} broke the invariant; trust ahead "
        f"of signing by {trust_ahead:.1f}s, the last leaf of the old root replaced {signing_ahead:.1f}s before the "
        "retirement"
    )
    # The properties: the invariant in every state, and its two margins. The switch comes a propagation delay after
    # the announcement (the peers have the next root by then); the mirror image: a re-issued leaf reaches its workload
    # within a propagation delay, so the old root should stay in every ca.crt about as long after the last leaf it
    # signed was replaced. Half a delay is asked for either margin (whole seconds in the annotations, a busy machine).
    broken = {
        INVARIANT: f"{seen.violating_states} of {seen.states} states broke the invariant, in use while not trusted: "
        + ", ".join(f"{name} ({n} states)" for name, n in sorted(seen.violators.items()))
        + "; the first: "
        + "; ".join(map(str, seen.violations[:3])),
        TRUST_MARGIN: f"the switch came {trust_ahead:.1f}s after every ca.crt had the next root",
        RETIRE_MARGIN: f"the old root left a ca.crt {signing_ahead:.1f}s after the last leaf it signed was replaced",
    }
    held = {
        INVARIANT: not seen.violations,
        TRUST_MARGIN: trust_ahead >= PROPAGATION_S / 2,
        RETIRE_MARGIN: signing_ahead >= PROPAGATION_S / 2,
    }
    assert all(held.values()), [broken[k] for k in held if not held[k]]


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


def _base64_pem(certs: list[x509.Certificate]) -> str:
    return base64.b64encode(b"".join(c.public_bytes(Encoding.PEM) for c in certs)).decode()


class HandFed:
    """States fed to a :class:`RotationWatch` one Secret write at a time, as the API server would send them."""

    def __init__(self, secrets: list[str]) -> None:
        self.watch = RotationWatch(client.ApiClient(), "ns", "ca-tls", secrets)
        self.rv = 0

    def write(self, name: str, tls: x509.Certificate, ca_crt: list[x509.Certificate]) -> None:
        self.rv += 1
        data = {key: _base64_pem(certs) for key, certs in (("tls.crt", [tls]), ("ca.crt", ca_crt))}
        self.watch.observe("MODIFIED", {"metadata": {"name": name, "resourceVersion": str(self.rv)}, "data": data})

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
    w, old_fp, new_fp = fed.watch, fingerprint(old[0]), fingerprint(new[0])
    assert w.everywhere_at[new_fp] < w.first_use_at[new_fp] and w.last_use_ended_at[old_fp] < w.dropped_at[old_fp]
    assert fed.watch.serials == {"ca-tls": [format(c.serial_number, "x") for c in (old[0], new[0])]} | {
        f"{n}-tls": [format(c.serial_number, "x") for c in pair]
        for n, pair in (("a", (a_old, a_new)), ("b", (b_old, b_new)))
    }
