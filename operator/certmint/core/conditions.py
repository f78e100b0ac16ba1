"""Status conditions: building them so lastTransitionTime only moves when the status does.

``rfc3339`` and ``parse_rfc3339`` (certmint.pki.timestamps) are re-exported here for status writers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from certmint.pki.timestamps import parse_rfc3339, rfc3339

__all__ = ["Condition", "condition_status", "merge_conditions", "parse_rfc3339", "rfc3339"]


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str


def merge_conditions(
    current: Iterable[Mapping[str, Any]],
    updates: Iterable[Condition],
    *,
    now: datetime,
    observed_generation: int | None = None,
) -> list[dict[str, Any]]:
    """Apply ``updates`` over ``current``: a condition keeps its lastTransitionTime unless its status changes.

    Conditions of other types are kept as they are, in their original order.
    """
    by_type = {c.get("type"): dict(c) for c in current}
    order = [c.get("type") for c in current]
    for u in updates:
        old = by_type.get(u.type)
        changed = old is None or old.get("status") != u.status
        new: dict[str, Any] = {
            "type": u.type,
            "status": u.status,
            "reason": u.reason,
            "message": u.message,
            "lastTransitionTime": (
                rfc3339(now) if changed or old is None else old.get("lastTransitionTime", rfc3339(now))
            ),
        }
        if observed_generation is not None:
            new["observedGeneration"] = observed_generation
        if u.type not in by_type:
            order.append(u.type)
        by_type[u.type] = new
    return [by_type[t] for t in order if t in by_type]


def condition_status(conditions: Iterable[Mapping[str, Any]], type_: str) -> str | None:
    for c in conditions:
        if c.get("type") == type_:
            return str(c.get("status"))
    return None
