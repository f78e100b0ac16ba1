"""The report and text of ``approve``/``deny``, built from the request as the API server returned it."""

from __future__ import annotations

from typing import Any

from certmint.cli.render import decision_report, decision_text, dump
from certmint.pki.csr import CertificateTemplate, build_csr
from tests.unit.builders import cached_key


def written(decided: str, reason: str, *, request: str | None = None) -> dict[str, Any]:
    pem = (
        request
        or build_csr(
            cached_key("ECDSA", 256),
            CertificateTemplate(common_name="worker.apps.svc", dns_names=("worker.apps.svc",), uris=("spiffe://x/w",)),
        ).decode()
    )
    return {
        "metadata": {"name": "worker", "namespace": "apps", "uid": "u-1", "resourceVersion": "7"},
        "spec": {"request": pem, "issuerRef": {"name": "mesh-ca", "kind": "ClusterIssuer"}, "duration": "1h"},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "WaitingForApproval", "message": "m"},
                {
                    "type": decided,
                    "status": "True",
                    "reason": reason,
                    "message": "checked",
                    "lastTransitionTime": "2026-11-30T18:00:00Z",
                },
            ]
        },
    }


def test_the_report_names_the_request_the_condition_written_and_what_was_asked_for() -> None:
    report = decision_report(written("Approved", "ApprovedByUser"), "Approved")

    assert set(report) == {"certificateRequest", "decision", "condition", "issuerRef", "requested"}
    assert report["certificateRequest"] == {"namespace": "apps", "name": "worker", "uid": "u-1"}
    assert report["condition"] == {
        "type": "Approved",
        "status": "True",
        "reason": "ApprovedByUser",
        "message": "checked",
        "lastTransitionTime": "2026-11-30T18:00:00Z",
    }
    assert report["issuerRef"] == {"kind": "ClusterIssuer", "name": "mesh-ca"}
    assert report["requested"] == {
        "subject": "CN=worker.apps.svc",
        "dnsNames": ["worker.apps.svc"],
        "ipAddresses": [],
        "uris": ["spiffe://x/w"],
        "emailAddresses": [],
        "keyAlgorithm": "ECDSA",
        "keySize": 256,
        "duration": "1h",
        "isCA": False,
    }
    assert decision_text(report).splitlines() == [
        "approved: CertificateRequest apps/worker (ApprovedByUser); ClusterIssuer mesh-ca signs it next",
        "  Subject:  CN=worker.apps.svc",
        "  Names:    worker.apps.svc, spiffe://x/w",
        "  Key:      ECDSA 256; duration 1h",
    ]


def test_a_denial_says_it_is_final_and_an_unreadable_csr_is_left_out() -> None:
    report = decision_report(written("Denied", "DeniedByUser", request="not a CSR"), "Denied")
    assert report["requested"] is None
    assert decision_text(report) == "denied: CertificateRequest apps/worker (DeniedByUser); it will never be signed"
    assert '"decision": "Denied"' in dump(report, "json", decision_text)
