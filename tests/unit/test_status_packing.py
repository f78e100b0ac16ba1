"""A Certificate's status is kept deflated against a preset dictionary (controller.state)."""

from __future__ import annotations

import json
from typing import Any

from certmint.controller.state import pack_status, unpack_status


def _typical(serial: str) -> dict[str, Any]:
    return {
        "notBefore": "2026-11-26T23:18:09Z",
        "notAfter": "2027-02-24T23:18:09Z",
        "renewalTime": "2027-01-25T11:02:33Z",
        "serialNumber": serial,
        "revision": 4,
        "observedGeneration": 2,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Renewed",
                "message": "certificate is up to date and valid until 2027-02-24T23:18:09Z",
                "lastTransitionTime": "2026-11-26T23:18:10Z",
                "observedGeneration": 2,
            },
            {
                "type": "Issuing",
                "status": "False",
                "reason": "Renewed",
                "message": f"Renewed certificate serial {serial} (revision 4, CertificateRequest web-4x7k2), valid "
                "until 2027-02-24T23:18:09Z; reason: renewal time 2026-11-26T23:18:08Z reached; the current "
                "certificate expires at 2026-12-26T23:18:09Z",
                "lastTransitionTime": "2026-11-26T23:18:10Z",
                "observedGeneration": 2,
            },
        ],
    }


def test_statuses_round_trip_exactly() -> None:
    for status in (
        {},
        _typical("7f3a9c0e5b214d8e9a6c1f2b3d4e5f60"),
        {"conditions": [{"message": 'ünïcödé ✓ and "quotes"\n'}], "nested": {"list": [1, 2.5, None, True]}},
    ):
        assert unpack_status(pack_status(status)) == status


def test_a_typical_status_packs_into_a_fraction_of_its_json() -> None:
    status = _typical("7f3a9c0e5b214d8e9a6c1f2b3d4e5f60")
    text = json.dumps(status, separators=(",", ":")).encode()
    packed = pack_status(status)
    assert len(packed) < len(text) / 4, (len(packed), len(text))
