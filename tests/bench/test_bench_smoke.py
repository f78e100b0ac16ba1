"""The benchmark command keeps working: ``python -m tests.bench.run --scale reduced``, every scenario.

Asserts that every scenario finished and that its numbers are consistent (every Certificate Ready, counts that
must agree do agree, zero re-issuances on restart and takeover), never how fast anything was: timings belong in
the benchmark's report, not in pass/fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.bench.scenarios import SCALES, SCENARIOS
from tests.conftest import missing_prerequisite

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 900


def _issuance_sane(r: dict[str, Any]) -> None:
    n = r["n"]
    assert r["issuances"] == n
    assert r["time_to_ready_s"]["count"] == n, "every Certificate seen Ready by the watch"
    t = r["time_to_ready_s"]
    assert 0 <= t["p50"] <= t["p99"] <= t["max"]
    assert 0 < r["create_s"] <= r["wall_s"] + 1e-3
    assert r["certs_per_s"] > 0
    assert r["api_requests_per_issuance"].get("create", 0) >= 2, "at least the CertificateRequest and the Secret"
    assert r["api_requests_per_issuance"].get("patch", 0) >= 1, "at least the Certificate status"
    assert r["cpu"]["operator_cpu_s"] > 0 and r["cpu"]["kube-apiserver_cpu_s"] > 0 and r["cpu"]["etcd_cpu_s"] >= 0
    assert r["operator_peak_rss_mib"] >= r["operator_rss_mib_after"] > 0
    assert r["healthz_latency_ms"]["count"] > 0


@pytest.mark.bench
def test_reduced_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    if shutil.which("go") is None and not os.environ.get("CERTMINT_KUBE_BIN_DIR"):
        missing_prerequisite("Go is needed to build kube-apiserver/etcd for the benchmark's control plane")
    out = tmp_path / "bench.json"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tests.bench.run", "--scale", "reduced", "--out", str(out)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the reduced benchmark did not finish in {TIMEOUT_S}s:\n{e.stderr!s:.4000}")
    report = f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, report
    results = json.loads(out.read_text())
    scale = SCALES["reduced"]
    scenarios = results["scenarios"]
    assert set(scenarios) == set(SCENARIOS), report
    assert all("error" not in r for r in scenarios.values()), report
    assert results["machine"]["nproc"] and results["machine"]["kubernetes"]["gitVersion"]

    runs = scenarios["throughput"]["runs"]
    assert [r["n"] for r in runs] == list(scale.throughput_sizes)
    for r in runs:
        _issuance_sane(r)
    rsa = scenarios["rsa"]
    assert rsa["n"] == scale.rsa_certificates and rsa["private_key"]["algorithm"] == "RSA"
    _issuance_sane(rsa)

    mem = scenarios["memory"]
    assert mem["certificates"] >= scale.memory_certificates + 1  # plus the CA's own Certificate
    assert mem["unrelated_secrets"] == scale.noise_secrets
    assert mem["rss_mib_steady"] > 0 and mem["rss_mib_after"] > 0
    assert mem["rss_mib_max_during"] >= mem["rss_mib_after"] - 1  # sampled maximum, sampled up to the end
    assert mem["sentinel_reissue_s"] > 0
    assert mem["operator_cpu_s_during"] >= 0

    restart = scenarios["restart"]
    assert restart["certificates"] == mem["certificates"]
    assert restart["reissues"] == 0, "a restart must not re-issue Ready certificates"
    assert restart["serials_changed"] == 0
    assert 0 < restart["readyz_s"] <= restart["time_to_idle_s"]

    takeover = scenarios["takeover"]
    due = takeover["due_set"]["n"]
    assert due == scale.takeover_certificates
    assert takeover["certificates"] == restart["certificates"] + due
    assert takeover["lease_settings"]["used_by_both"] == takeover["lease_settings"]["chart_defaults"]
    assert takeover["lease_after"]["holder"] != takeover["lease_before_kill"]["holder"], "the standby took the Lease"
    assert takeover["reissues_outside_due_set"] == 0, "a takeover must not re-issue Ready certificates"
    assert takeover["due_after_kill_s"]["min"] > 0, "nothing was due before the leader died"
    # Order, not speed: the standby takes the Lease before it renews, and renews none before it fell due.
    assert takeover["kill_to_leader_s"] > 0
    assert 0 < takeover["kill_to_lease_acquired_s"] <= takeover["kill_to_first_due_renewal_s"]
    assert takeover["kill_to_first_due_renewal_s"] <= takeover["kill_to_all_due_renewed_s"]
    assert len(takeover["due_renewals"]) == due and all(r["lag_s"] >= 0 for r in takeover["due_renewals"])
    assert takeover["due_set_revisions_gained"] >= due
    assert takeover["new_leader_issuances_by_trigger"].get("Renewed", 0) >= due
    assert takeover["new_leader_api_requests_kill_to_idle_total"] > 0

    costs = scenarios["api-costs"]
    assert costs["n_per_request_kind"] == scale.api_cost_requests
    assert set(costs["one_issuance_requests"]) | set(costs["one_renewal_requests"]) == set(costs["cpu_ms_per_request"])
    assert all(c["kube-apiserver"] > 0 for c in costs["cpu_ms_per_request"].values())
    assert costs["one_issuance_cpu_ms"]["kube-apiserver"] > 0
    assert costs["one_renewal_cpu_ms"]["kube-apiserver"] > 0

    renewal = scenarios["renewal"]
    n = scale.renewal_certificates
    assert renewal["n"] == n
    assert renewal["renewed"] == n and renewal["renewal_lag_observations"] == n
    assert renewal["client_renewed_minus_scheduled_s"]["count"] == n
    assert renewal["renewal_lag_p99"] != "n/a"
    jitter = renewal["jitter_s"]
    assert 0 <= jitter["min"] <= jitter["max"]
    assert renewal["renewal_time_spread_s"] >= 0
