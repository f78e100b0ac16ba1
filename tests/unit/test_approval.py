"""A CertificateRequest's stage from its conditions, and what a person may still decide (core.approval)."""

from __future__ import annotations

from typing import Any

import pytest

from certmint.core.approval import Stage, decision_refused, denied_by_person, stage


def c(type_: str, status: str = "True", reason: str = "R") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": ""}


WAITING = [c("Ready", "False", "WaitingForApproval")]


@pytest.mark.parametrize(
    ("conditions", "expected", "approve", "deny"),
    [
        ([], Stage.PENDING, "not waiting for approval", None),
        ([c("Ready", "False", "Pending")], Stage.PENDING, "not waiting for approval", None),
        (WAITING, Stage.WAITING, None, None),
        ([*WAITING, c("Approved", reason="ApprovedByUser")], Stage.APPROVED, "already approved", "already approved"),
        ([*WAITING, c("Denied", reason="DeniedByUser")], Stage.DENIED, "already denied", "already denied"),
        (
            [c("Denied", reason="PolicyViolation"), c("Ready", "False", "Denied")],
            Stage.DENIED,
            "already denied",
            "already denied",
        ),
        (
            [c("Approved", reason="PolicyAllowed"), c("Ready", reason="Issued")],
            Stage.ISSUED,
            "already issued",
            "already issued",
        ),
        ([c("Approved"), c("Ready", "False", "Failed")], Stage.FAILED, "failed", "failed"),
        ([c("InvalidRequest")], Stage.INVALID, "invalid", "invalid"),
    ],
)
def test_stage_and_decisions(
    conditions: list[dict[str, Any]], expected: Stage, approve: str | None, deny: str | None
) -> None:
    assert stage(conditions) is expected
    for verb, wanted in ((True, approve), (False, deny)):
        refused = decision_refused(conditions, verb)
        assert (refused is None) == (wanted is None), (verb, refused)
        assert wanted is None or (refused is not None and wanted in refused)


def test_a_persons_denial_is_one_the_operator_has_not_finished() -> None:
    assert denied_by_person([*WAITING, c("Denied", reason="DeniedByUser")]) is not None
    assert denied_by_person([c("Denied", reason="PolicyViolation"), c("Ready", "False", "Denied")]) is None
    assert denied_by_person(WAITING) is None
