"""A Certificate's status is kept deflated against a preset dictionary (controller.state): the statuses the
real reconciler writes must stay small.

The dictionary holds the wording of the status messages (from controller.certificates, core.decisions and
core.renewal's vocabulary); when a message is reworded and the dictionary is not, every Certificate's
status costs more memory, silently. So the statuses measured here are the ones the operator writes, driven
through the controller tier, and each must pack within a few bytes of what the current dictionary achieves:
a changed wording (+6 to +15 bytes for a changed phrase) fails here, with the numbers to update the
dictionary by.

The measurement is exact: the renewal jitter is off (renewal times are then fixed) and the certificate's
random serial number is replaced by a fixed stand-in of the same length before packing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest

from certmint.controller.state import pack_status, unpack_status
from certmint.core.conditions import parse_rfc3339
from tests.controller.conftest import CA_ISSUER
from tests.controller.harness import NAMESPACE, Harness, condition
from tests.integration.builders import certificate

#: Packed bytes of each real status, measured with the current dictionary (see the docstring), plus 3.
#: Without the dictionary they pack to about 320, 350, 220 and 220 bytes; as JSON they are 520-800 bytes.
BOUNDS = {
    "issued": 153 + 3,  # 130 before status.verified (issue 18): its digest and resourceVersion do not compress
    "renewed": 168 + 3,
    "failed": 100 + 3,
    "failed again": 106 + 3,
}


def _stand_in_serial(status: dict[str, Any]) -> dict[str, Any]:
    """The status with its (random) serial number replaced everywhere by a fixed hex string of the same length."""
    serial = status.get("serialNumber")
    if not serial:
        return status
    fixed = hashlib.sha256(b"a stand-in serial number").hexdigest()[: len(serial)]
    result: dict[str, Any] = json.loads(json.dumps(status).replace(serial, fixed))
    return result


async def _real_statuses(harness: Harness) -> dict[str, dict[str, Any]]:
    """The statuses the operator writes for an issuance, its renewal, and a failure and its first retry."""
    harness.settings = replace(harness.settings, jitter_fraction=0.0)
    await harness.restart()  # no Certificate exists yet: this only rebuilds the operator with those settings
    statuses = {"issued": await harness.issued("web", issuer=CA_ISSUER)}
    await harness.advance_to(parse_rfc3339(statuses["issued"]["renewalTime"]))
    statuses["renewed"] = harness.certificate("web")["status"]
    assert condition(harness.certificate("web"), "Issuing")["reason"] == "Renewed"

    harness.create(certificate("orphan", NAMESPACE, issuer_name="missing", duration="24h"))
    await harness.settle()
    statuses["failed"] = harness.certificate("orphan")["status"]
    await harness.advance(30)
    statuses["failed again"] = harness.certificate("orphan")["status"]
    assert statuses["failed again"]["failedIssuanceAttempts"] == 2
    assert condition(harness.certificate("orphan"), "Ready")["reason"] == "IssuerNotFound"
    return {name: _stand_in_serial(status) for name, status in statuses.items()}


async def test_the_statuses_the_operator_writes_pack_small(harness: Harness) -> None:
    statuses = await _real_statuses(harness)
    assert statuses.keys() == BOUNDS.keys()
    sizes = {name: len(pack_status(status)) for name, status in statuses.items()}
    too_big = {name: (size, BOUNDS[name]) for name, size in sizes.items() if size > BOUNDS[name]}
    assert not too_big, (
        f"statuses pack larger than the dictionary in controller/state.py allows (packed, bound): {too_big}; "
        "a message was probably reworded: put the new wording into _STATUS_DICTIONARY (or, if the growth is "
        f"wanted, raise BOUNDS). The statuses: {json.dumps(statuses, indent=1)}"
    )


@pytest.mark.parametrize(
    ("name", "phrase", "reworded"),
    [
        ("issued", "certificate is up to date and valid until", "the certificate is current, valid until"),
        ("renewed", "; reason: ", "; because "),
        ("failed again", "does not exist; retrying in", "is missing; will retry in"),
    ],
)
async def test_a_reworded_message_breaks_its_bound(harness: Harness, name: str, phrase: str, reworded: str) -> None:
    """The bounds are tight enough to notice a rewording the dictionary does not know."""
    status = (await _real_statuses(harness))[name]
    text = json.dumps(status)
    assert phrase in text
    assert len(pack_status(json.loads(text.replace(phrase, reworded)))) > BOUNDS[name]


async def test_statuses_round_trip_exactly(harness: Harness) -> None:
    odd = {"conditions": [{"message": 'ünïcödé ✓ and "quotes"\n'}], "nested": {"list": [1, 2.5, None, True]}}
    for status in ({}, odd, *(await _real_statuses(harness)).values()):
        assert unpack_status(pack_status(status)) == status
