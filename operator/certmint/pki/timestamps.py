"""RFC 3339 timestamps, the one text form of a moment everywhere certmint writes one.

Status fields, conditions, Events, Secret annotations and messages all show
times the way Kubernetes does for ``metav1.Time``: UTC, whole seconds, a "Z"
("2027-02-24T23:18:09Z"). It lives in the lowest layer so that pki's own
messages, core and kube share it (kube and core may not import each other).
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC at whole seconds, e.g. "2027-02-24T23:18:09Z" (a naive datetime is taken as UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    """The inverse of ``rfc3339`` (and any RFC 3339 time with an offset); raises ValueError for other text."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment
