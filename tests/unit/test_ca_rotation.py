"""core.ca_rotation: when a replaced CA Secret starts phases, what each read of it keeps, and its status round trip."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certmint.core import ca_rotation
from certmint.core.ca_rotation import Phase, ReplacedRoot, anchors_from_status, follow, next_step, switched
from certmint.pki.signing import SigningAuthority, fingerprint_sha256
from tests.unit.builders import NOW, CAPair, build_ca

P = timedelta(seconds=120)


def authority(ca: CAPair, *, ca_crt: bytes | None = None) -> SigningAuthority:
    return SigningAuthority.from_pem(ca.cert_pem, ca.key_pem, ca_crt=ca_crt, now=NOW)


@pytest.fixture(scope="module")
def old() -> CAPair:
    return build_ca("Old Root")


@pytest.fixture(scope="module")
def new() -> CAPair:
    return build_ca("New Root")


def replaced(old: CAPair, new: CAPair, **kwargs: object) -> ReplacedRoot | None:
    before = authority(old)
    args: dict[object, object] = {
        "previous_anchors": before.trust_anchors,
        "previous_root": before.trust_anchor,
        "authority": authority(new),
        "now": NOW,
        "propagation": P,
    }
    args.update(kwargs)
    return follow(None, **args)  # type: ignore[arg-type]


def test_a_new_root_is_announced_first_with_the_previous_one_kept(old: CAPair, new: CAPair) -> None:
    rotation = replaced(old, new)
    assert rotation is not None
    assert rotation.phase is Phase.ANNOUNCED and rotation.holds_signing
    assert rotation.next_step_at == NOW + P and rotation.since == NOW
    assert rotation.kept == (old.cert,) and rotation.root == fingerprint_sha256(new.cert)
    # What the issuer hands on: both roots, the Secret's first; it still signs with the Secret's CA.
    kept = authority(new).keeping(rotation.kept)
    assert kept.trust_anchors == (new.cert, old.cert)
    assert kept.certificate == new.cert and kept.trust_anchor == new.cert
    assert kept.trust_bundle_pem == new.cert_pem + old.cert_pem


@pytest.mark.parametrize(
    "case",
    ["no propagation time", "nothing known before", "same root", "same key and subject", "previous root expired"],
)
def test_no_phases_where_nobody_can_be_refused(case: str, old: CAPair, new: CAPair) -> None:
    if case == "no propagation time":
        assert replaced(old, new, propagation=timedelta(0)) is None
    elif case == "nothing known before":  # a new issuer, or a restart with a status without the roots' PEM
        assert replaced(old, new, previous_anchors=(), previous_root=None) is None
    elif case == "same root":  # an intermediate replaced under the same root
        root = build_ca("Shared Root")
        first, second = build_ca("Int 1", parent=root), build_ca("Int 2", parent=root)
        before = authority(first, ca_crt=root.cert_pem)
        assert (
            follow(
                None,
                previous_anchors=before.trust_anchors,
                previous_root=before.trust_anchor,
                authority=authority(second, ca_crt=root.cert_pem),
                now=NOW,
                propagation=P,
            )
            is None
        )
    elif case == "same key and subject":  # a root renewed with its key: leaves verify under both
        renewed = build_ca("Old Root", key=old.key, not_after=NOW + timedelta(days=700))
        assert replaced(old, renewed) is None
    else:
        expired = build_ca("Old Root", not_before=NOW - timedelta(days=10), not_after=NOW - timedelta(seconds=1))
        before = SigningAuthority.from_pem(
            expired.cert_pem, expired.key_pem, now=NOW - timedelta(days=1)
        )  # loaded while it was valid
        assert replaced(old, new, previous_anchors=before.trust_anchors, previous_root=before.trust_anchor) is None


def test_a_root_announced_by_hand_in_ca_crt_is_signed_under_at_once(old: CAPair, new: CAPair) -> None:
    """The person put the new root in ca.crt first (every trust set got it), then replaced the key pair."""
    announced = authority(old, ca_crt=old.cert_pem + new.cert_pem)
    # The previous root still in ca.crt: nothing for certmint to do.
    args = {"previous_anchors": announced.trust_anchors, "previous_root": announced.trust_anchor, "now": NOW}
    assert follow(None, authority=authority(new, ca_crt=old.cert_pem + new.cert_pem), propagation=P, **args) is None  # type: ignore[arg-type]
    # The previous root dropped from ca.crt at the same time: it is kept until no certificate uses it.
    rotation = follow(None, authority=authority(new), propagation=P, **args)  # type: ignore[arg-type]
    assert rotation is not None and rotation.phase is Phase.RETIRING and not rotation.holds_signing
    assert rotation.kept == (old.cert,) and rotation.next_step_at == NOW + 2 * P


def test_a_root_kept_in_ca_crt_by_the_person_still_holds_signing(old: CAPair, new: CAPair) -> None:
    """ca.crt = previous + new root with the new key pair at once: the new root was not announced before."""
    rotation = replaced(old, new, authority=authority(new, ca_crt=new.cert_pem + old.cert_pem))
    assert rotation is not None and rotation.holds_signing
    assert authority(new, ca_crt=new.cert_pem + old.cert_pem).keeping(rotation.kept).trust_anchors == (
        new.cert,
        old.cert,
    )


def test_later_reads_of_the_same_secret_keep_the_rotation(old: CAPair, new: CAPair) -> None:
    rotation = replaced(old, new)
    assert rotation is not None
    kept = authority(new).keeping(rotation.kept)
    again = follow(
        rotation,
        previous_anchors=kept.trust_anchors,
        previous_root=kept.trust_anchor,
        authority=authority(new),
        now=NOW + timedelta(seconds=30),
        propagation=P,
    )
    assert again == rotation
    # The kept root expiring ends the rotation: nothing valid chains to it any more.
    late = NOW + timedelta(days=366)
    assert (
        follow(rotation, previous_anchors=(), previous_root=None, authority=authority(new), now=late, propagation=P)
        is None
    )


def test_a_secret_replaced_again_keeps_what_was_signed(old: CAPair, new: CAPair) -> None:
    third = build_ca("Third Root")
    rotation = replaced(old, new)
    assert rotation is not None
    kept = authority(new).keeping(rotation.kept)
    args = {"previous_anchors": kept.trust_anchors, "previous_root": kept.trust_anchor, "now": NOW, "propagation": P}
    # Replaced again before the switch: nothing was signed under the announced root, the old one is still kept.
    again = follow(rotation, authority=authority(third), **args)  # type: ignore[arg-type]
    assert again is not None and again.holds_signing and again.kept == (old.cert,)
    assert again.root == fingerprint_sha256(third.cert)
    # Replaced again after the switch: certificates were signed under the second root too.
    after = follow(switched(rotation, NOW, P), authority=authority(third), **args)  # type: ignore[arg-type]
    assert after is not None and after.holds_signing and after.kept == (old.cert, new.cert)


def test_the_status_round_trip_keeps_everything(old: CAPair, new: CAPair) -> None:
    rotation = replaced(old, new)
    assert rotation is not None
    status = rotation.to_status()
    assert status["source"] == ca_rotation.SOURCE and status["phase"] == "NextRootStaged"
    assert ReplacedRoot.from_status(status) == rotation
    moved = switched(rotation, NOW + P, P)
    assert ReplacedRoot.from_status(moved.to_status()) == moved
    # A root Certificate's rotation (no source), and garbage, are not a replaced root's.
    assert ReplacedRoot.from_status({"phase": "NextRootStaged", "nextStepAt": "2026-01-01T00:00:00Z"}) is None
    assert ReplacedRoot.from_status({**status, "previousRoots": ["not PEM"]}) is None
    assert ReplacedRoot.from_status({**status, "phase": "Bogus"}) is None


def test_the_anchors_a_status_lists_are_read_back_with_the_signing_one(old: CAPair, new: CAPair) -> None:
    entries = [
        {"fingerprint": "x", "signsThisCA": False, "pem": new.cert_pem.decode()},
        {"fingerprint": "y", "signsThisCA": True, "pem": old.cert_pem.decode()},
        {"fingerprint": "z", "signsThisCA": False},  # written by a version without the PEM
    ]
    assert anchors_from_status(entries) == ((new.cert, old.cert), 1)
    assert anchors_from_status(None) == ((), -1)


@pytest.mark.parametrize(
    ("pending", "clear_after", "expected"),
    [
        (None, None, "held"),  # not known yet: the step waits
        (3, None, "postponed"),  # pending when due: a whole propagation time later
        (0, 0.0, "taken"),  # clear since long enough
        (0, None, "half later"),  # first look clear at the step's time (a restart): half a propagation time later
    ],
)
def test_a_step_waits_for_what_it_depends_on(pending: int | None, clear_after: float | None, expected: str) -> None:
    at = NOW
    now = NOW + timedelta(seconds=1)
    clear_since = None if clear_after is None else NOW - P
    result = next_step(now, P, at, pending, clear_since)
    if expected == "taken":
        assert result is None
        return
    assert result is not None
    when, wake = result
    assert wake > now or expected == "held"
    if expected == "held":
        assert when == at
    elif expected == "postponed":
        assert when >= now + P
    else:
        assert when == now + P / 2  # (whole seconds already)
