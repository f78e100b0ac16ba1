"""The one status writer of every kind (Certificate, Issuer, ClusterIssuer, CertificateRequest).

A status is written as one merge patch of its fields and its conditions merged over the current ones
(a condition keeps its lastTransitionTime unless its status changes), and only when something differs:
a reconcile that changes nothing writes nothing.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from certmint.core.conditions import Condition, merge_conditions
from certmint.kube import resources
from certmint.kube.client import JSON, ApiError, KubeClient


class ConditionStatus(TypedDict, total=False):
    """One entry of status.conditions (core.conditions.merge_conditions writes them)."""

    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class VerifiedStatus(TypedDict):
    """status.verified: the last pass that found (or wrote) the Secret good, and for what."""

    generation: int  # the Certificate's metadata.generation
    secretResourceVersion: str  # the Secret's, as found or written
    issuer: str  # certificate_plan.issuer_digest of the issuer then


class CertificateStatus(TypedDict, total=False):
    """A Certificate's status (crds/certmint.dev_certificates.yaml): what the Secret holds, and how issuing goes.

    ``None`` removes a field in the merge patch (a success clears the failure fields).
    """

    notBefore: str
    notAfter: str
    renewalTime: str
    serialNumber: str
    revision: int
    observedGeneration: int
    conditions: list[ConditionStatus]
    failedIssuanceAttempts: int | None
    lastFailureTime: str | None
    verified: VerifiedStatus | None
    lastRenewRequest: str


async def write_status(
    api: KubeClient,
    kind: str,
    namespace: str | None,
    name: str,
    current: Mapping[str, Any],
    conditions: Sequence[Condition],
    fields: Mapping[str, Any],
    *,
    now: datetime.datetime,
    observed_generation: int | None = None,
    resource_version: str | None = None,
) -> JSON | None:
    """Write ``fields`` and ``conditions`` over ``current``; the object as written, or None when nothing had
    changed or the object is gone (deleted meanwhile: nothing left to report on). With ``resource_version``, the
    write applies only over that version (an ApiError 409 otherwise)."""
    status: dict[str, Any] = {
        **fields,
        "conditions": merge_conditions(
            current.get("conditions") or [], conditions, now=now, observed_generation=observed_generation
        ),
    }
    if observed_generation is not None:
        status["observedGeneration"] = observed_generation
    if all(current.get(k) == v for k, v in status.items()):
        return None
    try:
        return await resources.patch_status(api, kind, namespace, name, status, resource_version=resource_version)
    except ApiError as e:
        if e.not_found:
            return None
        raise
