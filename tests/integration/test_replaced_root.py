"""A CA Secret that a person replaces with a CA under a new root, against the real API server, the operator SIGKILLed
in each phase of the rotation that follows (issue 14, "Crash safety").

N Certificates under a namespaced ``ca`` Issuer whose CA Secret is a plain ``kubernetes.io/tls`` Secret a person made
(an issuing CA below a root of theirs; no certmint label, no Certificate behind it). The person replaces tls.crt,
tls.key and ca.crt in one write with an issuing CA below a new root (ca.crt the new root alone), and the operator is
killed (SIGKILL, then a new process) at one of these points:

- ``replaced``: right after the write, before the operator noticed it (no status.rotation, no ca.crt with the new
  root); it stays down until after the switch would have come had it noticed at once;
- ``announced``: status.rotation phase NextRootStaged and the new root in every certificate's ca.crt;
- ``reissuing``: phase PreviousRootRetiring, part of the certificates re-issued under the new CA;
- ``retiring``: every certificate re-issued, the previous root still in their ca.crt.

A :class:`~tests.integration.rotation_watch.RotationWatch` rebuilds every state the Secrets went through and checks
in each that every certificate in use chains to a root that every certificate's ca.crt holds; a watch of the Issuer
records every value its status.rotation took. The person's CA Secret is watched too but is no trust set of the check:
its ca.crt is the new root alone from the person's write on, which is the person's doing and what the rotation exists
to bridge. Asserted after the run: no state broke the invariant, nothing was signed under the new CA before every
ca.crt held its root (at least half a propagation delay before), the previous root left no ca.crt until half a delay
after the last certificate under it was replaced; status.rotation was one rotation whose phases came in order, each
begun once and its next step never moved earlier (so the new process resumed the phase it was killed in); neither
step came before its time; the rotation completed and re-issued each certificate exactly once, spread over the
re-issue window (not one burst at the switch). Printed: when each phase came, the re-issues per second at their peak,
the margins.

The operator watches only the test's namespace, with a propagation time of PROPAGATION_S and an issuer re-check
every RECHECK_S: a person's Secret is not watched (it has no label), and a person replaces a Secret without touching
the Issuer, so the re-check is how the operator notices, as it does in a cluster (where it is a minute by default).
"""

from __future__ import annotations

import base64
import collections
import datetime
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from certmint.pki.signing import fingerprint_sha256
from certmint.pki.timestamps import parse_rfc3339
from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import GROUP, VERSION, Certmint, certificate, issuer, unique
from tests.integration.replicas import FAST_LEASE, stand_ins
from tests.integration.rotation_watch import RotationWatch, fingerprint
from tests.unit.builders import CAPair, build_ca

pytestmark = pytest.mark.integration

T = TypeVar("T")

COUNT = 40
PROPAGATION_S = 8.0
RECHECK_S = 2.0
MESH = "mesh"
CA_SECRET = "person-ca"
ANNOUNCED, RETIRING = "NextRootStaged", "PreviousRootRetiring"
SOURCE = "CASecretReplaced"
#: The kill points, and the phase status.rotation shows at each (None: no rotation yet).
KILL_POINTS: dict[str, str | None] = {
    "replaced": None,
    "announced": ANNOUNCED,
    "reissuing": RETIRING,
    "retiring": RETIRING,
}


@dataclass(frozen=True)
class PersonCA:
    """What a person puts in a CA Secret: an issuing CA below a root of theirs. Every generation has the same names
    (a root renewed with a new key keeps its name), so only the keys tell them apart."""

    root: CAPair
    ca: CAPair

    @classmethod
    def make(cls) -> PersonCA:
        now = datetime.datetime.now(datetime.UTC)
        start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=30)
        root = build_ca("Person Root CA", not_before=start, not_after=end)
        return cls(root, build_ca("Person Issuing CA", parent=root, not_before=start, not_after=end))

    def secret_data(self) -> dict[str, bytes | str]:
        """tls.crt, tls.key and ca.crt (the root alone), base64 as a Secret's data."""
        data = {"tls.crt": self.ca.cert_pem, "tls.key": self.ca.key_pem, "ca.crt": self.root.cert_pem}
        encoded: dict[str, bytes | str] = {key: base64.b64encode(value).decode() for key, value in data.items()}
        return encoded

    def signed(self, leaf: x509.Certificate) -> bool:
        try:
            leaf.verify_directly_issued_by(self.ca.cert)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True


@dataclass
class RotationHistory:
    """Every value an Issuer's status.rotation took, in order, each with the time.monotonic() it was seen: a watch of
    the Issuer from a list's resourceVersion delivers each write (resumed from the last resourceVersion when the
    server ends it; ``error`` if it cannot be)."""

    api: client.ApiClient
    namespace: str
    name: str
    values: list[tuple[float, dict[str, Any] | None]] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._custom = client.CustomObjectsApi(self.api)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="issuer-rotation-watch")
        self._rv = ""

    def __enter__(self) -> RotationHistory:
        listed = self._list()
        for obj in listed.get("items") or []:
            self._record(obj)
        self._rv = str(listed["metadata"]["resourceVersion"])
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    @property
    def current(self) -> dict[str, Any] | None:
        with self._cond:
            return self.values[-1][1] if self.values else None

    def phase(self) -> str | None:
        rotation = self.current
        return str(rotation["phase"]) if rotation else None

    def wait(self, found: Callable[[], T | None], what: str, timeout: float) -> T:
        """``found()`` once it returns something truthy (looked at after each change); an AssertionError after
        ``timeout`` seconds or if the watch failed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = found()
                if value:
                    return value
                if self.error is not None:
                    raise AssertionError(f"the Issuer watch failed while waiting for {what}: {self.error!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout}s waiting for {what}; status.rotation: {self.current}"
                    )
                self._cond.wait(left)

    def _list(self) -> dict[str, Any]:
        listed = self._custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "issuers", field_selector=f"metadata.name={self.name}"
        )
        assert isinstance(listed, dict)
        return listed

    def _record(self, obj: dict[str, Any]) -> None:
        rotation = (obj.get("status") or {}).get("rotation")
        with self._cond:
            if not self.values or self.values[-1][1] != rotation:
                self.values.append((time.monotonic(), rotation))
            self._cond.notify_all()

    def _run(self) -> None:
        reconnects = 0
        while not self._stop.is_set():
            w = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in w.stream(  # type: ignore[no-untyped-call]
                    self._custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    "issuers",
                    field_selector=f"metadata.name={self.name}",
                    resource_version=self._rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=3,
                ):
                    obj = event["object"]
                    self._rv = str(obj["metadata"]["resourceVersion"])
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(obj)
                    if self._stop.is_set():
                        w.stop()  # type: ignore[no-untyped-call]
            except Exception as e:  # 410 Gone loses writes: a failure; a reset connection resumes at _rv
                reconnects += 1
                if self._stop.is_set():
                    return
                if (isinstance(e, ApiException) and e.status == 410) or reconnects > 10:
                    with self._cond:
                        self.error = e
                        self._cond.notify_all()
                    return
                self._stop.wait(0.2)


@pytest.fixture
def namespace(api: client.ApiClient) -> str:
    return Certmint(api).namespace(unique("replaced"))


@pytest.fixture
def rotating(control_plane: ControlPlane, operator: OperatorProcess, namespace: str) -> Iterator[OperatorProcess]:
    env = {
        **FAST_LEASE,
        "CERTMINT_WATCH_NAMESPACES": namespace,
        "CERTMINT_TRUST_PROPAGATION_SECONDS": str(PROPAGATION_S),
        "CERTMINT_ISSUER_RECHECK_SECONDS": str(RECHECK_S),
    }
    with stand_ins(control_plane, operator, [env], first_run=700) as (op,):
        yield op


def _mesh(cm: Certmint, namespace: str, ca: PersonCA) -> list[str]:
    """The person's CA Secret, a CA Issuer on it and COUNT Certificates of that issuer, all Ready; their names."""
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name=CA_SECRET), type="kubernetes.io/tls", data=ca.secret_data()
    )
    cm.core.create_namespaced_secret(namespace, secret)
    cm.create(issuer(MESH, namespace, ca_secret=CA_SECRET))
    cm.wait_ready("Issuer", MESH, namespace, timeout=60)
    names = [f"svc-{i:03d}" for i in range(COUNT)]
    for name in names:
        cm.create(certificate(name, namespace, issuer_name=MESH, issuer_kind="Issuer", duration="2h"))
    for name in names:
        cm.wait_ready("Certificate", name, namespace, timeout=120)
    return names


def _held(cm: Certmint, namespace: str, secrets: list[str], new: PersonCA) -> tuple[int, int]:
    """From the API now: how many of ``secrets`` have a leaf signed under ``new`` and the new root in their ca.crt."""
    signed = announced = 0
    for name in secrets:
        data = cm.secret_data(name, namespace)
        signed += new.signed(x509.load_pem_x509_certificates(data["tls.crt"])[0])
        announced += fingerprint(new.root.cert) in {
            fingerprint(c) for c in x509.load_pem_x509_certificates(data["ca.crt"])
        }
    return signed, announced


def _monotonic(rfc3339: str) -> float:
    """An RFC 3339 time of the operator's (same machine, same clock) on this process's time.monotonic() scale."""
    return parse_rfc3339(rfc3339).timestamp() - time.time() + time.monotonic()


@pytest.mark.parametrize("killed_in", list(KILL_POINTS))
def test_a_replaced_ca_secret_rotation_resumes_the_phase_the_operator_was_killed_in(
    api: client.ApiClient, namespace: str, rotating: OperatorProcess, killed_in: str
) -> None:
    """The operator SIGKILLed at ``killed_in`` of the rotation that a person's replacement of the CA Secret starts.

    The invariant, in every state (one per Secret write, from the watch): each certificate in use (the leaf of each
    certificate's tls.crt) chains to a root that is in EVERY certificate's ca.crt (compared as the same certificate).
    So no leaf may be signed under the new CA before the last ca.crt patch of the announcement has landed, and the
    previous root may leave a ca.crt only once no leaf under it is in use. Its margins: the first leaf under the new
    root comes at least half a propagation delay after the new root was in every ca.crt, and the previous root leaves
    the first ca.crt at least half a delay after the last leaf under it was replaced (a workload loads a changed
    Secret up to a delay later).

    The phase resumed: status.rotation took the values of one rotation (to the new root, keeping the previous root):
    NextRootStaged, then PreviousRootRetiring, then none, each phase begun once (one ``since``) and its nextStepAt
    never earlier than before (so never earlier than at the kill); the switch and the retirement came no earlier
    than the last nextStepAt of their phase; killed before it noticed, the new process announced from its own start
    (a whole propagation delay). The rotation completed: every leaf under the new CA, every ca.crt the new root
    alone, each certificate re-issued exactly once (two leaf serials, status.revision 2).
    """
    cm = Certmint(api)
    old, new = PersonCA.make(), PersonCA.make()
    names = _mesh(cm, namespace, old)
    secrets = [f"{name}-tls" for name in names]
    old_root, new_root = fingerprint(old.root.cert), fingerprint(new.root.cert)
    phase_at_kill = KILL_POINTS[killed_in]
    watched = RotationWatch(
        api, namespace, CA_SECRET, secrets, label_selector=None, check_ca_secret=False, to_root=True
    )
    with watched as seen, RotationHistory(api, namespace, MESH) as history:
        assert all(seen.signer(s) == old_root and seen.anchors(s) == {old_root} for s in secrets)
        assert history.current is None

        # The person replaces the CA Secret: a CA under a new root, ca.crt the new root alone, in one write.
        t0 = time.monotonic()
        cm.core.patch_namespaced_secret(CA_SECRET, namespace, {"data": new.secret_data()})
        if killed_in != "replaced":
            history.wait(lambda: history.phase() == ANNOUNCED, "the issuer to notice", timeout=RECHECK_S + 15)
            seen.wait(
                lambda: all(new_root in seen.anchors(s) for s in secrets),
                "every ca.crt to hold the new root",
                timeout=PROPAGATION_S,
            )
        if killed_in == "reissuing":
            history.wait(lambda: history.phase() == RETIRING, "the switch", timeout=2 * PROPAGATION_S)
            seen.wait(
                lambda: len(seen.signed_by(new_root, secrets)) >= COUNT // 2,
                f"{COUNT // 2} certificates re-issued under the new CA",
                timeout=2 * PROPAGATION_S,
            )
        elif killed_in == "retiring":
            seen.wait(
                lambda: len(seen.signed_by(new_root, secrets)) == COUNT,
                "every certificate re-issued under the new CA",
                timeout=4 * PROPAGATION_S,
            )
        rotating.kill()
        killed_s = time.monotonic() - t0

        # The phase at the kill, as the API server holds it (nothing writes until the new process starts).
        at_kill = cm.get("Issuer", MESH, namespace).get("status", {}).get("rotation")
        reissued_at_kill, announced_at_kill = _held(cm, namespace, secrets, new)
        if phase_at_kill is None:
            assert at_kill is None and announced_at_kill == 0, (
                f"the operator noticed the replacement before the kill ({killed_s:.2f}s after it): {at_kill}, "
                f"{announced_at_kill} ca.crt with the new root; not the scenario"
            )
            # Down until after the switch would have come had it noticed at once (the scenario, not a wait).
            time.sleep(max(0.0, t0 + RECHECK_S + PROPAGATION_S + 1 - time.monotonic()))
        else:
            assert at_kill is not None and at_kill["phase"] == phase_at_kill, at_kill
            assert announced_at_kill == COUNT, f"killed {killed_in} with {announced_at_kill} ca.crt announced"
        if killed_in == "announced":
            assert reissued_at_kill == 0, f"{reissued_at_kill} signed under the new CA in phase {ANNOUNCED}"
        elif killed_in == "reissuing":
            assert 0 < reissued_at_kill < COUNT, f"killed with {reissued_at_kill} certificates re-issued"
        elif killed_in == "retiring":
            assert reissued_at_kill == COUNT and at_kill is not None
        rotating.start()
        started_s = rotating.started_at - t0
        restarted_s = time.monotonic() - t0

        # The new process completes the rotation.
        seen.wait(
            lambda: (
                len(seen.signed_by(new_root, secrets)) == COUNT and all(seen.anchors(s) == {new_root} for s in secrets)
            ),
            "every certificate under the new CA and every ca.crt the new root alone",
            timeout=6 * PROPAGATION_S + 60,
        )
        history.wait(lambda: history.current is None, "status.rotation to be gone", timeout=10)

    assert seen.gaps == 0 and seen.error is None and history.error is None, (seen.gaps, seen.error, history.error)
    assert not seen.violations, (
        f"{seen.violating_states} of {seen.states} states broke the invariant: "
        + ", ".join(f"{name} ({n} states)" for name, n in sorted(seen.violators.items()))
        + "; the first: "
        + "; ".join(map(str, seen.violations[:3]))
    )
    assert seen.signer(CA_SECRET) == new_root
    # One rotation: none before the write and none at the end, nothing in between (not dropped and begun again).
    values = [rotation for _, rotation in history.values]
    assert values[0] is None and values[-1] is None and None not in values[1:-1] and len(values) > 2, values
    rotations = [r for r in values if r is not None]
    for r in rotations:
        assert r["source"] == SOURCE and r["nextRoot"] == fingerprint_sha256(new.root.cert), r
        assert r["previousRoots"] == [old.root.cert_pem.decode()], r
    phases = [r["phase"] for r in rotations]
    assert phases == sorted(phases, key=[ANNOUNCED, RETIRING].index) and set(phases) == {ANNOUNCED, RETIRING}, phases
    last: dict[str, dict[str, Any]] = {}
    for phase in (ANNOUNCED, RETIRING):
        of = [r for r in rotations if r["phase"] == phase]
        assert len({r["since"] for r in of}) == 1, f"phase {phase} begun more than once: {of}"
        steps = [parse_rfc3339(r["nextStepAt"]) for r in of]
        assert steps == sorted(steps), f"the step of phase {phase} moved earlier: {[r['nextStepAt'] for r in of]}"
        last[phase] = of[-1]
    if at_kill is not None:
        assert at_kill in rotations, (at_kill, rotations)  # resumed from it (and never earlier: above)
    else:
        first = rotations[0]
        assert _monotonic(first["nextStepAt"]) >= rotating.started_at + PROPAGATION_S - 1, (
            f"the new process, down when the CA Secret was replaced, announced with a switch at {first['nextStepAt']}, "
            f"less than a propagation delay after it started ({started_s:.1f}s after the replacement)"
        )
    # Neither step before its time (the status keeps whole seconds, down).
    switched_at, retired_at = seen.first_use_at[new_root], seen.dropped_at[old_root]
    assert parse_rfc3339(last[RETIRING]["since"]) >= parse_rfc3339(last[ANNOUNCED]["nextStepAt"]), last
    assert switched_at >= _monotonic(last[ANNOUNCED]["nextStepAt"]), "switched before its time"
    assert retired_at >= _monotonic(last[RETIRING]["nextStepAt"]), "retired before its time"
    # Each certificate re-issued once.
    twice = {s: serials for s, serials in seen.serials.items() if s != CA_SECRET and len(serials) != 2}
    assert not twice, f"leaf serials seen other than [before, after]: {twice}"
    revisions = {n: cm.get("Certificate", n, namespace)["status"]["revision"] for n in names}
    assert set(revisions.values()) == {2}, {n: r for n, r in revisions.items() if r != 2}

    noticed_s = next(t for t, r in history.values if r is not None) - t0
    announced_s = seen.everywhere_at[new_root] - t0
    reissued = sorted(seen.signed_at[(s, new_root)] - t0 for s in secrets)
    per_second = collections.Counter(int(t) for t in reissued)
    done_s = history.values[-1][0] - t0
    trust_ahead = switched_at - seen.everywhere_at[new_root]
    retire_behind = retired_at - seen.last_use_ended_at[old_root]
    print(
        f"\nreplaced CA Secret, {COUNT} certificates, propagation {PROPAGATION_S:g}s, re-check {RECHECK_S:g}s, "
        f"operator SIGKILLed {killed_in} at {killed_s:.1f}s ({announced_at_kill} ca.crt with the new root, "
        f"{reissued_at_kill} re-issued), started again {started_s:.1f}-{restarted_s:.1f}s: noticed {noticed_s:.1f}s, "
        f"new root in every ca.crt {announced_s:.1f}s, switched {switched_at - t0:.1f}s, re-issued "
        f"{reissued[0]:.1f}-{reissued[-1]:.1f}s (peak {max(per_second.values())}/s), previous root retired "
        f"{retired_at - t0:.1f}s, status.rotation gone {done_s:.1f}s; phases {phases}; {seen.states} states checked, "
        f"{seen.violating_states} broke the invariant; trust ahead of signing by {trust_ahead:.1f}s, the last leaf "
        f"under the previous root replaced {retire_behind:.1f}s before the retirement"
    )
    spread = reissued[-1] - reissued[0]
    assert trust_ahead >= PROPAGATION_S / 2, f"the first leaf under the new CA came {trust_ahead:.1f}s after trust"
    assert retire_behind >= PROPAGATION_S / 2, (
        f"the previous root left a ca.crt {retire_behind:.1f}s after its last leaf"
    )
    # Re-issued spread over the window (CERTMINT_ROTATION_REISSUE_RATE 20/s: 40 in 2 s, so the propagation time),
    # not one burst at the switch.
    assert spread >= PROPAGATION_S / 3, f"re-issued in {spread:.1f}s, peak {max(per_second.values())}/s: {reissued}"


# -- the watch's options for a person's CA Secret, fed states by hand ------------------------------------------


def _leaf(name: str, ca: PersonCA) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    end = now + datetime.timedelta(hours=1)
    return build_ca(name, parent=ca.ca, ca=False, key_cert_sign=None, not_before=now, not_after=end).cert


@pytest.mark.parametrize("broken", [None, "a leaf under the new CA before every ca.crt has its root"])
def test_the_watch_checks_roots_of_chains_and_leaves_a_persons_ca_secret_out(broken: str | None) -> None:
    """With ``to_root`` a leaf's signer is the root above its issuing CA, and with ``check_ca_secret`` False the
    person's write of the new CA (ca.crt the new root alone) is no violation; a leaf under the new CA while one
    certificate's ca.crt lacks the new root is one, naming that Secret."""
    old, new = PersonCA.make(), PersonCA.make()
    watched = RotationWatch(
        client.ApiClient(),
        "ns",
        CA_SECRET,
        ["a-tls", "b-tls"],
        label_selector=None,
        check_ca_secret=False,
        to_root=True,
    )
    revisions = iter(range(1, 100))

    def write(name: str, tls: list[x509.Certificate], ca_crt: list[x509.Certificate]) -> None:
        data = {
            key: base64.b64encode(b"".join(c.public_bytes(Encoding.PEM) for c in certs)).decode()
            for key, certs in (("tls.crt", tls), ("ca.crt", ca_crt))
        }
        metadata = {"name": name, "resourceVersion": str(next(revisions))}
        watched.observe("MODIFIED", {"metadata": metadata, "data": data})

    a_old, b_old, a_new, b_new = (_leaf(n, ca) for ca in (old, new) for n in ("a", "b"))
    write(CA_SECRET, [old.ca.cert], [old.root.cert])
    write("a-tls", [a_old, old.ca.cert], [old.root.cert])
    write("b-tls", [b_old, old.ca.cert], [old.root.cert])
    write(CA_SECRET, [new.ca.cert], [new.root.cert])  # the person
    both = [new.root.cert, old.root.cert]
    write("a-tls", [a_old, old.ca.cert], both)
    old_root, new_root = fingerprint(old.root.cert), fingerprint(new.root.cert)
    if broken:
        write("a-tls", [a_new, new.ca.cert], both)
        assert [(v.secret, v.signer, v.missing_from) for v in watched.violations] == [("a-tls", new_root, ("b-tls",))]
        return
    write("b-tls", [b_old, old.ca.cert], both)
    write("a-tls", [a_new, new.ca.cert], both)
    write("b-tls", [b_new, new.ca.cert], both)
    write("a-tls", [a_new, new.ca.cert], [new.root.cert])
    write("b-tls", [b_new, new.ca.cert], [new.root.cert])
    assert watched.violations == [] and watched.states == 10
    assert watched.signer(CA_SECRET) == watched.signer("a-tls") == new_root
    assert watched.everywhere_at[new_root] < watched.first_use_at[new_root]
    assert watched.last_use_ended_at[old_root] < watched.dropped_at[old_root]
