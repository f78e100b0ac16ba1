"""A CA Secret that a person replaces: the phases certmint runs for it (docs/ca-rotation.md).

A ``ca`` issuer signs with whatever CA its Secret holds. When a person (or Vault, external-secrets, a GitOps tool)
writes a CA there whose root is new, peers that hold only the previous root would refuse everything signed under
the new one until their ``ca.crt`` is refreshed, and the other way round. So certmint does not take the new CA at
once; it runs the same phases as for a root of its own (controller.certificate_plan), with the state kept in the
issuer's ``status.rotation`` instead of the Secret, which certmint never writes:

- **announced** (phase ``NextRootStaged``): the previous root stays among the issuer's trust anchors beside the new
  one (certmint keeps it, a public certificate, in the status), so every certificate's ``ca.crt`` and every Bundle
  gets both; nothing is signed under the new CA yet: due issuances wait, existing certificates are kept;
- **switched** (``PreviousRootRetiring``), at ``next_step_at`` and once every trust set holds the new root: the issuer
  signs under the new CA, and re-issues, spread and paced, the certificates signed under the previous root;
- **retired**, twice the propagation time after the switch and once no certificate under the previous root is
  left: the previous root leaves the trust anchors. (A previous root that the person kept in the Secret's
  ``ca.crt`` stays there, as written.)

No phase is needed, and none is started, when the new root was already among the trust anchors before (the
person announced it by hand in ``ca.crt``, or certmint staged it: a root of its own), when only the CA below the
root changed (an intermediate), when the new root has the previous one's subject and key (leaves verify under
both), when the previous root has expired, or with a propagation time of 0.

Pure: certificates and times in, a :class:`ReplacedRoot` out.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from certmint.pki.inspect import load_pem_chain, self_signed
from certmint.pki.keys import PKIError
from certmint.pki.signing import SigningAuthority, fingerprint_sha256
from certmint.pki.timestamps import parse_rfc3339, rfc3339

#: status.rotation.source of a rotation run by the issuer for its replaced CA Secret (one of a certmint root CA
#: Certificate's is read from that Secret's annotations and has no source field).
SOURCE: Final = "CASecretReplaced"
#: At most this many previous roots are kept (each replacement during a rotation may add one).
MAX_KEPT: Final = 4
#: An issuer annotation: ``Immediate`` makes a replaced root take effect at once, without phases (a compromised
#: CA: its root must leave the trust anchors now, and every certificate under it be re-issued); it also ends a
#: rotation in progress. Any other value, or none: the phases.
ROOT_REPLACEMENT: Final = "certmint.dev/root-replacement"
IMMEDIATE: Final = "Immediate"


class Phase(enum.StrEnum):
    ANNOUNCED = "NextRootStaged"  # the new root reaches every trust set; nothing is signed under it yet
    RETIRING = "PreviousRootRetiring"  # signing under the new root; the previous one leaves when nothing uses it


@dataclass(frozen=True, slots=True)
class ReplacedRoot:
    """A rotation run for a replaced CA Secret: its phase, when its next step is due, the new root (fingerprint),
    the previous roots kept as trust anchors until retired, and when the phase began."""

    phase: Phase
    next_step_at: datetime.datetime
    root: str  # fingerprint_sha256 of the CA Secret's root, which this rotation moves to
    kept: tuple[x509.Certificate, ...]
    since: datetime.datetime

    @property
    def holds_signing(self) -> bool:
        """Nothing may be signed under the new CA yet."""
        return self.phase is Phase.ANNOUNCED

    def to_status(self) -> dict[str, Any]:
        """status.rotation."""
        return {
            "phase": self.phase.value,
            "nextStepAt": rfc3339(self.next_step_at),
            "source": SOURCE,
            "since": rfc3339(self.since),
            "nextRoot": self.root,
            "previousRoots": [c.public_bytes(Encoding.PEM).decode() for c in self.kept],
        }

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> ReplacedRoot | None:
        """The rotation a status.rotation records (None: none, one of a certmint root, or unreadable)."""
        if not status or status.get("source") != SOURCE:
            return None
        try:
            kept = tuple(c for pem in status.get("previousRoots") or [] for c in load_pem_chain(str(pem).encode()))
            return cls(
                phase=Phase(status["phase"]),
                next_step_at=parse_rfc3339(str(status["nextStepAt"])),
                root=str(status["nextRoot"]),
                kept=kept,
                since=parse_rfc3339(str(status["since"])),
            )
        except (KeyError, ValueError, PKIError):
            return None


def anchors_from_status(entries: Sequence[Mapping[str, Any]] | None) -> tuple[tuple[x509.Certificate, ...], int]:
    """The trust anchors a status.trustAnchors lists (those with their PEM) and the index of the one that signed
    (-1: none), for a process that starts without having seen the CA itself."""
    anchors: list[x509.Certificate] = []
    signing = -1
    for entry in entries or []:
        try:
            certs = load_pem_chain(str(entry.get("pem") or "").encode())
        except PKIError:
            continue
        if entry.get("signsThisCA"):
            signing = len(anchors)
        anchors.append(certs[0])
    return tuple(anchors), signing


def follow(
    ongoing: ReplacedRoot | None,
    *,
    previous_anchors: Sequence[x509.Certificate],
    previous_root: x509.Certificate | None,
    authority: SigningAuthority,
    now: datetime.datetime,
    propagation: datetime.timedelta,
) -> ReplacedRoot | None:
    """The rotation after the issuer read its CA Secret as ``authority``.

    ``ongoing``: the rotation before this read; ``previous_anchors`` and ``previous_root``: the trust anchors and
    the root signed under, as of the previous read (empty and None when not known: nothing is started)."""
    if propagation <= datetime.timedelta(0):
        return None
    root = authority.trust_anchor
    fingerprint = fingerprint_sha256(root)

    def usable(cert: x509.Certificate) -> bool:
        return (
            self_signed(cert)
            and cert.not_valid_before_utc <= now < cert.not_valid_after_utc
            and not _same_signer(cert, root)
        )

    if ongoing is not None and ongoing.root == fingerprint:
        kept = tuple(c for c in ongoing.kept if usable(c))
        # Every kept root expired: nothing valid chains to them any more, and nobody can be refused.
        return dataclasses.replace(ongoing, kept=kept) if kept else None
    # A root not seen before (a new rotation), or another one during a rotation (the Secret replaced again):
    # keep what certificates in use may still chain to. Under an announced root nothing was signed.
    candidates = list(ongoing.kept if ongoing is not None else ())
    signed_under_previous = ongoing is None or ongoing.phase is Phase.RETIRING
    if previous_root is not None and signed_under_previous:
        candidates.append(previous_root)
    kept = tuple(dict.fromkeys(c for c in candidates if usable(c)))[-MAX_KEPT:]
    if not kept:
        return None  # nothing valid was signed under another root: nobody can be refused
    announced = any(fingerprint_sha256(a) == fingerprint for a in previous_anchors)
    if announced:
        # The new root reached every trust set before it signed (announced by hand in ca.crt): only the previous
        # root's retirement is left, unless the Secret still holds it (then it is the person's to remove).
        if all(c in authority.trust_anchors for c in kept):
            return None
        return ReplacedRoot(Phase.RETIRING, _whole_second_up(now + 2 * propagation), fingerprint, kept, now)
    return ReplacedRoot(Phase.ANNOUNCED, _whole_second_up(now + propagation), fingerprint, kept, now)


def switched(rotation: ReplacedRoot, now: datetime.datetime, propagation: datetime.timedelta) -> ReplacedRoot:
    """The rotation once the issuer signs under the new root."""
    # (Whole seconds, up: the status keeps no fraction, and a restart must not take the step earlier.)
    return dataclasses.replace(
        rotation, phase=Phase.RETIRING, since=now, next_step_at=_whole_second_up(now + 2 * propagation)
    )


def _same_signer(a: x509.Certificate, b: x509.Certificate) -> bool:
    """Same subject and same public key: what one signed verifies under the other (a root renewed with its key)."""
    return a.subject == b.subject and _spki(a) == _spki(b)


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def next_step(
    now: datetime.datetime,
    propagation: datetime.timedelta,
    at: datetime.datetime,
    pending: int | None,
    clear_since: datetime.datetime | None,
) -> tuple[datetime.datetime, datetime.datetime] | None:
    """A rotation step due ``at`` (switch, retire) that waits for ``pending`` trust sets or certificates: None to
    take it now, else when it is due (``at``, or later: postponed, to be recorded again where the rotation keeps
    its state) and when to look again.

    The step waits for what it depends on (every trust set holding the next root; no certificate left under the
    old root) and comes at least half a propagation time after that was done, so that a workload that got the last
    change has time to load it. This process knows when it was done only by looking: while something is pending
    the root (or issuer) looks every quarter propagation time from three quarters before the step, and postpones the
    step to a whole propagation time after each look that still finds something; the step then comes no earlier than
    half a propagation time after the first look that found nothing (``clear_since``). A restart that finds
    nothing pending late, after being down, postpones the step by that half. ``pending`` None (not known yet:
    the issuers are not checked) holds the step and looks again soon."""
    p = propagation
    closing = watch_from(at, p)
    if pending is None:
        return at, min(max(closing, now), now + p / 8)
    if pending:
        if now < closing:
            return at, closing
        return max(at, _whole_second_up(now + p)), now + p / 4
    ready = max(at, _whole_second_up((clear_since or now) + p / 2))
    if now >= ready:
        return None
    return ready, ready


def watch_from(at: datetime.datetime, trust_propagation: datetime.timedelta) -> datetime.datetime:
    """Where a rotation step due ``at`` starts watching what it waits for (next_step): it is looked at
    then, after a stage or a switch, so that its first look is not the step's time."""
    return at - trust_propagation * 3 / 4


def _whole_second_up(moment: datetime.datetime) -> datetime.datetime:
    """A postponed step's time, as an annotation or status keeps it (whole seconds), never earlier than ``moment``."""
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + datetime.timedelta(seconds=1)
