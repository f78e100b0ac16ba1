"""A watch on the Secrets of one CA issuer that checks, in every state the API server went through, that every
certificate in use is signed by a CA that every trust set holds ("trust changes before signing changes").

Why a watch and not polling: the Secrets change one write at a time, each write is one etcd revision, and a watch
started at the resourceVersion of a list delivers every later write of the selected Secrets in revision order. Applying
the events in order therefore rebuilds each state the Secrets were ever in, however briefly; a poll sees only the states
it lands on (and, reading Secrets one by one, states that never existed). A watch the API server ends (its timeout) is
resumed from the last resourceVersion, which loses nothing; one too old to resume (410 Gone) would leave a gap, so it is
counted in ``gaps`` for the test to assert there was none.

The check, after every event (each state):

- The *trust sets* are the ca.crt of each watched Secret that exists: the CA Secret (where the issuer's trust anchors
  come from) and each certificate's Secret (what a workload that mounts it trusts).
- The certificates *in use* are the first certificate of the tls.crt of each certificate's Secret (the leaf a workload
  presents) and the CA Secret's tls.crt (the CA the issuer signs with from that state on).
- A certificate's *signer* is the CA certificate, among every one seen in the watched Secrets (ca.crt, tls.crt,
  next-tls.crt), whose key signed it; a root is its own signer.
- A *violation* is a certificate in use whose signer is missing from at least one trust set, compared as the same
  certificate (DER): a peer holding that ca.crt would refuse it. A Secret without a ca.crt misses every signer.

For a CA Secret a person made (tests/integration/test_replaced_root.py) the watch lists every Secret of the namespace
(that one has no label), leaves the CA Secret out of the check (``check_ca_secret``) and takes as a certificate's
signer the root its chain ends in (``to_root``: the person's CA is an issuing CA below a root).

The watch also keeps what a test asks about a rotation: each Secret's leaf serials in order, when each CA first signed
a certificate in use and when it last stopped doing so, when each CA was first in every trust set and when it first
left one after that, and every value the CA Secret's rotation annotations took.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from certmint.core.decisions import CERTIFICATE_NAME

T = TypeVar("T")

#: Only Secrets with the operator's label are watched (a server-side selector, as the operator does).
LABEL_SELECTOR = CERTIFICATE_NAME
#: How many violations are kept in full (all are counted).
KEPT_VIOLATIONS = 20
#: The most CA certificates above a certificate that ``to_root`` follows.
MAX_CHAIN = 8


def fingerprint(cert: x509.Certificate) -> str:
    """A CA's name in what the watch records: the start of its SHA-256 fingerprint."""
    return cert.fingerprint(hashes.SHA256()).hex()[:16]


def _certificates(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem) if pem else []
    except ValueError:
        return []


@dataclass(frozen=True, slots=True)
class Violation:
    """A state in which ``secret``'s certificate in use was signed by ``signer``, which the ca.crt of ``missing_from``
    lacked."""

    resource_version: str
    at: float  # time.monotonic() when the watch delivered that state
    secret: str
    signer: str
    missing_from: tuple[str, ...]

    def __str__(self) -> str:
        missing = ", ".join(self.missing_from[:5]) + (" ..." if len(self.missing_from) > 5 else "")
        return f"rv {self.resource_version}: {self.secret} signed by {self.signer}, not in the ca.crt of {missing}"


@dataclass(slots=True)
class _Secret:
    resource_version: str
    leaf: x509.Certificate | None  # tls.crt's first certificate
    anchors: frozenset[str]  # fingerprints of ca.crt's certificates
    next_root: str | None  # the CA Secret's next-tls.crt, staged
    annotations: dict[str, str]


@dataclass
class RotationWatch:
    """Watch ``ca_secret`` and ``certificate_secrets`` in ``namespace`` from :meth:`start` to :meth:`stop` (or as a
    context manager); :meth:`wait` waits on what the watch has seen, the other methods read it (under its lock)."""

    api: client.ApiClient
    namespace: str
    ca_secret: str
    certificate_secrets: Iterable[str]
    tracked: tuple[str, ...] = ()  # annotations of the CA Secret whose values are recorded (annotation_values)
    #: Which Secrets of the namespace are listed and watched: certmint's (its label); None: every one, for a CA
    #: Secret a person made (no label). Only ``ca_secret`` and ``certificate_secrets`` are recorded either way.
    label_selector: str | None = LABEL_SELECTOR
    #: Whether the CA Secret takes part in the check (its ca.crt a trust set, its tls.crt in use). False for a CA
    #: Secret a person writes: a person may replace everything in it at once, and certmint then keeps the previous
    #: root in the certificates' ca.crt and signs nothing under the new CA before they all hold its root, which the
    #: certificates' Secrets alone show (still watched, for the CAs it names and what it recorded).
    check_ca_secret: bool = True
    #: A certificate's signer is the root its chain ends in instead of the CA certificate that signed it, for a CA
    #: below a root: ca.crt holds roots (the chain is completed from every certificate seen, as for the signer).
    to_root: bool = False
    violations: list[Violation] = field(default_factory=list)
    violating_states: int = 0
    #: Secret -> in how many states its certificate in use was signed by a CA missing from a trust set.
    violators: dict[str, int] = field(default_factory=dict)
    states: int = 0  # states checked (the listed one, then one per event)
    gaps: int = 0  # watches too old to resume: states may have been missed
    error: BaseException | None = None
    #: Each watched Secret's leaf serial (hex), each time it changed, in order.
    serials: dict[str, list[str]] = field(default_factory=dict)
    #: The values the CA Secret's annotation took, in order (None: absent), for each key in ``tracked``.
    annotation_values: dict[str, list[str | None]] = field(default_factory=dict)
    #: CA fingerprint -> time.monotonic() of the first state where it was in every trust set.
    everywhere_at: dict[str, float] = field(default_factory=dict)
    #: CA fingerprint -> the first state after that where some trust set lacked it.
    dropped_at: dict[str, float] = field(default_factory=dict)
    #: CA fingerprint -> the first state where it signed a certificate in use; the last state where it stopped
    #: signing any (the last certificate in use that it signed was replaced).
    first_use_at: dict[str, float] = field(default_factory=dict)
    last_use_ended_at: dict[str, float] = field(default_factory=dict)
    #: (Secret, CA fingerprint) -> the first state where that Secret's certificate in use was signed by that CA.
    signed_at: dict[tuple[str, str], float] = field(default_factory=dict)
    #: Every CA the CA Secret's tls.crt held, and every one its next-tls.crt held (fingerprints, in order).
    ca_roots: list[str] = field(default_factory=list)
    staged_roots: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._members = {self.ca_secret, *self.certificate_secrets}
        self.annotation_values = {key: [] for key in self.tracked}
        self._core = client.CoreV1Api(self.api)
        self._secrets: dict[str, _Secret] = {}
        self._known: dict[str, x509.Certificate] = {}  # every certificate seen in the Secrets, by fingerprint
        self._signers: dict[bytes, str] = {}  # leaf DER -> its signer's fingerprint (only when found)
        self._in_use: dict[str, int] = {}  # CA fingerprint -> certificates in use it signed, in the last state
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rotation-watch")
        self._rv = ""

    # -- reading what was seen (the test's side) -----------------------------------------------------------

    def wait(self, found: Callable[[], T | None], what: str, timeout: float) -> T:
        """``found()`` (called under the lock at each new state) once it returns something truthy; an AssertionError
        after ``timeout`` seconds or if the watch failed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = found()
                if value:
                    return value
                if self.error is not None:
                    raise AssertionError(f"the Secret watch failed while waiting for {what}: {self.error!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
                self._cond.wait(left)

    def signer(self, secret: str) -> str | None:
        """The fingerprint of the CA that signed ``secret``'s certificate in use now (None: absent or unknown)."""
        with self._cond:
            s = self._secrets.get(secret)
            return self._signer(s.leaf) if s is not None and s.leaf is not None else None

    def anchors(self, secret: str) -> frozenset[str]:
        with self._cond:
            s = self._secrets.get(secret)
            return s.anchors if s is not None else frozenset()

    def annotation(self, secret: str, key: str) -> str | None:
        with self._cond:
            s = self._secrets.get(secret)
            return s.annotations.get(key) if s is not None else None

    def staged_root(self) -> str | None:
        with self._cond:
            s = self._secrets.get(self.ca_secret)
            return s.next_root if s is not None else None

    def signed_by(self, ca: str, secrets: Iterable[str]) -> list[str]:
        """Those of ``secrets`` whose certificate in use is signed by ``ca`` now."""
        return [name for name in secrets if self.signer(name) == ca]

    # -- the watch ------------------------------------------------------------------------------------------

    def start(self) -> RotationWatch:
        body = self._list()
        with self._cond:
            for obj in body.get("items") or []:
                self._apply("ADDED", obj)
            self._check(str(body["metadata"]["resourceVersion"]))
        self._rv = str(body["metadata"]["resourceVersion"])
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def __enter__(self) -> RotationWatch:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        reconnects = 0
        while not self._stop.is_set():
            w = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in w.stream(  # type: ignore[no-untyped-call]
                    self._core.list_namespaced_secret,
                    self.namespace,
                    label_selector=self.label_selector,
                    resource_version=self._rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=3,  # server-side: the loop sees _stop at least this often, and resumes at _rv
                    deserialize=False,
                ):
                    self.observe(event["type"], event["object"])
                    if self._stop.is_set():
                        w.stop()  # type: ignore[no-untyped-call]
            except ApiException as e:
                if e.status == 410:
                    self._relist()
                    continue
                self._fail(e)
                return
            except Exception as e:  # a connection reset: resume from the last resourceVersion (nothing is lost)
                reconnects += 1
                if self._stop.is_set():
                    return
                if reconnects > 10:
                    self._fail(e)
                    return
                self._stop.wait(0.2)

    def observe(self, kind: str, obj: dict[str, Any]) -> None:
        """One event of the watch (ADDED, MODIFIED, DELETED, BOOKMARK; the object as JSON): the next state, checked."""
        rv = str(obj["metadata"]["resourceVersion"])
        self._rv = rv
        if kind == "BOOKMARK":
            return
        with self._cond:
            self._apply(kind, obj)
            self._check(rv)
            self._cond.notify_all()

    def _relist(self) -> None:
        """The watch is too old to resume: what happened meanwhile is lost (a gap); take the Secrets as they are."""
        body = self._list()
        with self._cond:
            self.gaps += 1
            present = {obj["metadata"]["name"] for obj in body.get("items") or []}
            for name in [n for n in self._secrets if n not in present]:
                del self._secrets[name]
            for obj in body.get("items") or []:
                self._apply("MODIFIED", obj)
            self._rv = str(body["metadata"]["resourceVersion"])
            self._check(self._rv)
            self._cond.notify_all()

    def _list(self) -> dict[str, Any]:
        """The watched Secrets as one list (one resourceVersion), as the API server sends them (as the watch does)."""
        response: Any = self._core.list_namespaced_secret(
            self.namespace, label_selector=self.label_selector, _preload_content=False
        )
        body = json.loads(response.data)
        assert isinstance(body, dict)
        return body

    def _fail(self, error: BaseException) -> None:
        with self._cond:
            self.error = error
            self._cond.notify_all()

    # -- one state ------------------------------------------------------------------------------------------

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        name = str(meta["name"])
        if name not in self._members:
            return
        if kind == "DELETED":
            self._secrets.pop(name, None)
            return
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        for key in ("ca.crt", "tls.crt", "next-tls.crt"):
            for cert in _certificates(data.get(key, b"")):
                self._known.setdefault(fingerprint(cert), cert)
        chain = _certificates(data.get("tls.crt", b""))
        leaf = chain[0] if chain else None
        staged = _certificates(data.get("next-tls.crt", b""))
        annotations = dict(meta.get("annotations") or {})
        self._secrets[name] = _Secret(
            resource_version=str(meta["resourceVersion"]),
            leaf=leaf,
            anchors=frozenset(fingerprint(c) for c in _certificates(data.get("ca.crt", b""))),
            next_root=fingerprint(staged[0]) if staged else None,
            annotations=annotations,
        )
        if leaf is not None:
            serials = self.serials.setdefault(name, [])
            serial = format(leaf.serial_number, "x")
            if not serials or serials[-1] != serial:
                serials.append(serial)
        if name == self.ca_secret:
            if leaf is not None and (not self.ca_roots or self.ca_roots[-1] != fingerprint(leaf)):
                self.ca_roots.append(fingerprint(leaf))
            if staged and (not self.staged_roots or self.staged_roots[-1] != fingerprint(staged[0])):
                self.staged_roots.append(fingerprint(staged[0]))
            for key, values in self.annotation_values.items():
                if not values or values[-1] != annotations.get(key):
                    values.append(annotations.get(key))

    def _signer(self, leaf: x509.Certificate, depth: int = 0) -> str | None:
        der = leaf.public_bytes(Encoding.DER)
        found = self._signers.get(der)
        if found is not None:
            return found
        for fp, ca in self._known.items():
            try:
                leaf.verify_directly_issued_by(ca)
            except (InvalidSignature, ValueError, TypeError):  # another issuer name, key type or signature
                continue
            signer = fp
            if self.to_root and ca != leaf:  # signed by a CA below a root: that CA's root
                above = self._signer(ca, depth + 1) if depth < MAX_CHAIN else None
                if above is None:
                    return None
                signer = above
            self._signers[der] = signer
            return signer
        return None  # not known yet: looked up again at the next state

    def _check(self, rv: str) -> None:
        now = time.monotonic()
        self.states += 1
        names = [name for name in sorted(self._members) if name in self._secrets]
        all_present = len(names) == len(self._members)
        if not self.check_ca_secret:
            names = [name for name in names if name != self.ca_secret]
        present = [self._secrets[name] for name in names]
        everywhere = frozenset.intersection(*(s.anchors for s in present)) if present else frozenset()
        in_use: dict[str, int] = {}
        violated = False
        for name, s in zip(names, present, strict=True):
            if s.leaf is None:
                continue
            signer = self._signer(s.leaf) or f"an unknown CA ({s.leaf.issuer.rfc4514_string()})"
            in_use[signer] = in_use.get(signer, 0) + 1
            self.signed_at.setdefault((name, signer), now)
            self.first_use_at.setdefault(signer, now)
            if signer not in everywhere:
                violated = True
                self.violators[name] = self.violators.get(name, 0) + 1
                if len(self.violations) < KEPT_VIOLATIONS:
                    missing = tuple(n for n, t in zip(names, present, strict=True) if signer not in t.anchors)
                    self.violations.append(Violation(rv, now, name, signer, missing))
        self.violating_states += violated
        for ca in self._in_use:
            if ca not in in_use:
                self.last_use_ended_at[ca] = now
        self._in_use = in_use
        if all_present:
            for ca in everywhere:
                self.everywhere_at.setdefault(ca, now)
        for ca in self.everywhere_at:
            if ca not in everywhere and ca not in self.dropped_at:
                self.dropped_at[ca] = now
