"""A CertificateRequest's approval: its conditions, the stage they put it in, and what a person may still decide.

An issuer whose ``spec.policy.approval`` is ``Manual`` signs a CertificateRequest only after two judgements: the
policy's (certmint's, as for every request; a refusal is Denied) and then a person's, written as the request's
``Approved`` or ``Denied`` condition through the status subresource (``certmint approve`` / ``certmint deny``). The
API server keeps both conditions final and never both True (the CRD's rules); this module says, from the
conditions alone, which stage a request is in, so that the operator and the CLI read them the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any, Final

#: Condition types.
APPROVED: Final = "Approved"
DENIED: Final = "Denied"
READY: Final = "Ready"
INVALID_REQUEST: Final = "InvalidRequest"

#: Ready=False reasons of a request.
WAITING_FOR_APPROVAL: Final = "WaitingForApproval"  # the policy allows it; a person has not decided yet
DENIED_REASON: Final = "Denied"  # final: denied by the policy or by a person
FAILED: Final = "Failed"  # final: approved, but the policy refused it when it was to be signed
PENDING: Final = "Pending"  # the issuer is missing or not ready

#: The reasons ``certmint approve`` / ``deny`` write unless told otherwise (``--reason``).
APPROVED_BY_USER: Final = "ApprovedByUser"
DENIED_BY_USER: Final = "DeniedByUser"
#: The reason certmint writes on Approved when its policy alone approves (an Automatic issuer).
POLICY_ALLOWED: Final = "PolicyAllowed"


class Stage(enum.StrEnum):
    """Where a request is, judged from its conditions."""

    ISSUED = "Issued"  # Ready=True: status.certificate holds the certificate
    INVALID = "Invalid"  # InvalidRequest=True: it cannot be processed, whoever approves it
    DENIED = "Denied"  # Denied=True (by the policy or a person): never signed
    FAILED = "Failed"  # approved, then refused by the policy when it was to be signed: never signed
    APPROVED = "Approved"  # Approved=True, not signed yet
    WAITING = "WaitingForApproval"  # the policy allows it; waiting for a person's approve or deny
    PENDING = "Pending"  # not judged yet (new, or its issuer is missing or not ready)


def _status(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def stage(conditions: Iterable[Mapping[str, Any]]) -> Stage:
    """The stage of a request with these status conditions."""
    conditions = list(conditions)
    ready = _status(conditions, READY) or {}
    if ready.get("status") == "True":
        return Stage.ISSUED
    if (_status(conditions, INVALID_REQUEST) or {}).get("status") == "True":
        return Stage.INVALID
    if (_status(conditions, DENIED) or {}).get("status") == "True":
        return Stage.DENIED
    if ready.get("reason") == FAILED:
        return Stage.FAILED
    if (_status(conditions, APPROVED) or {}).get("status") == "True":
        return Stage.APPROVED
    if ready.get("reason") == WAITING_FOR_APPROVAL:
        return Stage.WAITING
    return Stage.PENDING


def approved_by_person(conditions: Iterable[Mapping[str, Any]]) -> bool:
    """Approved=True written by someone other than certmint's own policy (which writes PolicyAllowed)."""
    approved = _status(conditions, APPROVED) or {}
    return approved.get("status") == "True" and approved.get("reason") != POLICY_ALLOWED


def denied_by_person(conditions: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The Denied=True condition when it is a person's (certmint has not finished the request yet: its Ready is
    not Denied), else None."""
    conditions = list(conditions)
    denied = _status(conditions, DENIED) or {}
    ready = _status(conditions, READY) or {}
    if denied.get("status") == "True" and ready.get("reason") != DENIED_REASON:
        return denied
    return None


def decision_refused(conditions: Iterable[Mapping[str, Any]], approve: bool) -> str | None:
    """Why a person may not approve (``approve``) or deny this request now, or None when they may.

    Approving needs the policy's judgement first (Stage.WAITING): what a person approves is what certmint's policy
    allowed. Denying is allowed until the request is approved or finished.
    """
    current = stage(conditions)
    if approve:
        if current is Stage.WAITING:
            return None
        return {
            Stage.ISSUED: "it is already issued",
            Stage.INVALID: "it is invalid (InvalidRequest=True) and can never be signed",
            Stage.DENIED: "it is already denied, which is final",
            Stage.FAILED: "it failed (the policy refused it when it was to be signed), which is final",
            Stage.APPROVED: "it is already approved",
            Stage.PENDING: (
                "it is not waiting for approval: its issuer signs without manual approval, or certmint has not "
                "judged it against the policy yet (its issuer missing or not ready)"
            ),
        }[current]
    if current in (Stage.WAITING, Stage.PENDING):
        return None
    return {
        Stage.ISSUED: "it is already issued",
        Stage.INVALID: "it is invalid (InvalidRequest=True) and will never be signed anyway",
        Stage.DENIED: "it is already denied",
        Stage.FAILED: "it failed (the policy refused it when it was to be signed), which is final",
        Stage.APPROVED: "it is already approved, which is final",
    }[current]
