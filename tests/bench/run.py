"""certmint benchmarks: ``python -m tests.bench.run [--scale reduced|full] [--only NAME ...] [--out FILE.json]``.

Starts its own control plane (etcd, kube-apiserver, kube-controller-manager on loopback, workdir
``.local/bench-<timestamp>``), installs the CRDs, runs the operator as a separate process (``python -m certmint``
with default settings unless ``--operator-env`` says otherwise), creates a CA chain (selfSigned ClusterIssuer →
isCA Certificate in namespace certmint → CA ClusterIssuer ``bench-ca``) and runs the scenarios:

throughput  N ECDSA P-256 Certificates (full: 1,000 then 5,000 over 50 namespaces; reduced: 100 over 10), created
            at once from a thread pool; a watch started before the first create records when each becomes Ready.
rsa         the same with RSA-2048 keys (full: 200; reduced: 20).
memory      operator RSS with 10,000 (reduced: 200) Ready Certificates, then 10,000 (100) unrelated 100 KiB Secrets.
restart     graceful stop and a new process: time until idle, re-issuances (target 0).
takeover    a second operator process as a warm standby (the chart's default Lease settings), the leader SIGKILLed
            3 s before 20 short-lived Certificates fall due: time from the kill to the standby leading, to the first
            and the last of those renewals (each one's lag behind its due time) and to idle; re-issuances outside
            the set (target 0), the new leader's API requests, CPU and memory.
renewal     2,000 (reduced: 100) short-lived Certificates issued together: spread of renewal times, renewal lag.
api-costs   with the operator stopped, each request of one issuance and of one renewal sent 1,000 (reduced: 50)
            times: the API server's, etcd's and the controller manager's CPU per request — the control plane's
            price of a certificate.

Prints a table and writes JSON (default ``bench-results/bench-<timestamp>.json``). Every phase has a timeout; the
first failure stops the run (exit 1) with the logs kept under the workdir.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from tests.bench.harness import (
    BenchControlPlane,
    BenchError,
    BenchOperator,
    Kube,
    runtime_python,
    wait_until,
)
from tests.bench.scenarios import (
    CA_ISSUER,
    ECDSA_P256,
    OPERATOR_NAMESPACE,
    RUN_ORDER,
    RUNNERS,
    SCALES,
    SCENARIOS,
    Context,
    Scale,
)
from tests.controlplane.cluster import ControlPlaneError, build_binaries
from tests.controlplane.operator_process import OperatorStartError
from tests.integration.builders import certificate, cluster_issuer

REPO = Path(__file__).resolve().parents[2]
SELF_SIGNED = "bench-selfsigned"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def kubectl(cp: BenchControlPlane, *args: str) -> str:
    return cp.kubectl(*args, error=BenchError, timeout=120).stdout


def install_crds(cp: BenchControlPlane) -> None:
    crds = str(REPO / "crds")
    kubectl(cp, "apply", "--server-side", "--field-manager=certmint-bench", "-f", crds)
    kubectl(cp, "wait", "--for=condition=Established", "--timeout=60s", "-f", crds)
    kubectl(cp, "create", "namespace", OPERATOR_NAMESPACE)


def ca_chain(kube: Kube) -> None:
    """selfSigned ClusterIssuer → isCA Certificate (Secret bench-ca in the operator namespace) → CA ClusterIssuer."""
    kube.create(cluster_issuer(SELF_SIGNED))
    ca = certificate(
        "bench-ca",
        OPERATOR_NAMESPACE,
        issuer_name=SELF_SIGNED,
        secret="bench-ca",
        isCA=True,
        commonName="certmint bench CA",
        privateKey=ECDSA_P256,
    )
    kube.create(ca)
    kube.create(cluster_issuer(CA_ISSUER, ca_secret="bench-ca"))

    wait_until(lambda: kube.ready("Certificate", "bench-ca", OPERATOR_NAMESPACE), "the CA Certificate", 60)
    wait_until(lambda: kube.ready("ClusterIssuer", CA_ISSUER), "the CA ClusterIssuer", 60)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_facts() -> dict[str, Any]:
    meminfo = {
        line.split(":")[0]: line.split(":")[1].strip() for line in _read("/proc/meminfo").splitlines() if ":" in line
    }
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    versions = {}
    for dist in ("certmint", "kopf", "cryptography", "aiohttp", "kubernetes"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_total": meminfo.get("MemTotal"),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": versions,
        "git_commit": git.stdout.strip(),
        "git_dirty": bool(dirty),
        "loadavg_start": os.getloadavg(),
    }


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []

    def add(scenario: str, metric: str, value: Any, target: str = "") -> None:
        rows.append((scenario, metric, fmt(value), target))

    scenarios = results["scenarios"]
    for r in (scenarios.get("throughput") or {}).get("runs", []):
        name = f"throughput N={r['n']}"
        _issuance_rows(add, name, r, target_rate="≥ 50/s (aim 100) at 1000" if r["n"] >= 1000 else "")
    if "rsa" in scenarios and "error" not in scenarios["rsa"]:
        _issuance_rows(add, f"rsa N={scenarios['rsa']['n']}", scenarios["rsa"], target_rate="")
    m = scenarios.get("memory")
    if m and "error" not in m:
        add("memory", "certificates", m["certificates"])
        add("memory", "operator RSS when idle, before release (MiB)", m["rss_mib_at_idle_before_release"])
        add("memory", "operator RSS steady (MiB)", m["rss_mib_steady"], "≤ 100 at 10,000")
        add("memory", f"+ {m['unrelated_secrets']} unrelated Secrets ({m['unrelated_total_mib']} MiB)", "")
        add("memory", "operator RSS after (MiB)", m["rss_mib_after"])
        add("memory", "RSS change (%)", m["rss_change_pct"], "±10")
        add("memory", "operator RSS max during (MiB)", m["rss_mib_max_during"])
        add("memory", "operator CPU during phase (s)", m["operator_cpu_s_during"])
        add("memory", "  idle baseline, same window (s)", m["operator_cpu_s_idle_baseline_same_window"])
        add("memory", "phase window (s)", m["phase_cpu"]["window_s"])
    _takeover_rows(add, scenarios.get("takeover"))
    r = scenarios.get("restart")
    if r and "error" not in r:
        add("restart", "certificates", r["certificates"])
        add("restart", "graceful stop (s)", r["stop_s"])
        add("restart", "start → /readyz (s)", r["readyz_s"])
        add("restart", "start → idle (s)", r["time_to_idle_s"])
        add("restart", "re-issuances", r["reissues"], "0")
        add("restart", "serials changed (client check)", r["serials_changed"], "0")
        add("restart", "operator CPU to idle (s)", r["operator_cpu_s_to_idle"])
        add("restart", "operator RSS at idle (MiB)", r["rss_mib_at_idle"])
        add("restart", "operator RSS settled (MiB)", r["rss_mib_settled"])
    a = scenarios.get("api-costs")
    if a and "error" not in a:
        for label, cost in a["cpu_ms_per_request"].items():
            add(
                "api-costs",
                f"{label}: CPU ms apiserver / etcd / kcm",
                f"{cost['kube-apiserver']} / {cost['etcd']} / {cost['kube-controller-manager']}",
            )
        for what in ("issuance", "renewal"):
            t = a[f"one_{what}_cpu_ms"]
            add(
                "api-costs",
                f"one {what} ({len(a[f'one_{what}_requests'])} requests): CPU ms apiserver / etcd / kcm",
                f"{t['kube-apiserver']} / {t['etcd']} / {t['kube-controller-manager']}",
            )
    n = scenarios.get("renewal")
    if n and "error" not in n:
        add("renewal", "certificates / duration", f"{n['n']} / {n['duration']}")
        add("renewal", "issued within (s)", n["not_before_spread_s"])
        add("renewal", "renewalTime spread (s)", n["renewal_time_spread_s"])
        add("renewal", "renewalTime stddev (s)", n["renewal_time_stddev_s"])
        add("renewal", "jitter min/max (s)", f"{n['jitter_s']['min']} / {n['jitter_s']['max']}")
        add("renewal", "renewal lag p50 (metric)", n["renewal_lag_p50"])
        add("renewal", "renewal lag p99 (metric)", n["renewal_lag_p99"], "≤ 2 s")
        add("renewal", "renewal lag max (metric)", n["renewal_lag_max"])
        c = n["client_renewed_minus_scheduled_s"]
        add(
            "renewal",
            "client: revision 2 seen minus scheduled p50/p99/max (s)",
            f"{c['p50']} / {c['p99']} / {c['max']}",
        )
    for name, r in scenarios.items():
        if isinstance(r, dict) and "error" in r:
            add(name, "FAILED", r["error"].splitlines()[0][:100])
    widths = [max(len(row[i]) for row in [("scenario", "metric", "value", "target"), *rows]) for i in range(4)]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(("scenario", "metric", "value", "target"), widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    mach = results["machine"]
    lines.append("")
    lines.append(
        f"machine: {mach['nproc']} CPUs ({mach['cpu_model']}), {mach['memory_total']}, Python {mach['python']}, "
        f"Kubernetes {mach.get('kubernetes', {}).get('gitVersion')}, load {mach['loadavg_start']} at start"
    )
    return "\n".join(lines)


def _takeover_rows(add: Any, t: dict[str, Any] | None) -> None:
    if not t or "error" in t:
        return
    name = "takeover"
    lease = t["lease_settings"]["used_by_both"]
    add(name, "certificates", t["certificates"])
    add(
        name,
        "Lease duration / renew / retry (s)",
        " / ".join(
            f"{lease[v]:g}"
            for v in ("CERTMINT_LEASE_DURATION_SECONDS", "CERTMINT_LEASE_RENEW_SECONDS", "CERTMINT_LEASE_RETRY_SECONDS")
        ),
        "chart defaults",
    )
    add(name, "standby start → seen every Certificate (s)", t["standby_synced_after_start_s"])
    add(name, "SIGKILL → Lease expiry (s)", t["lease_expiry_after_kill_s"])
    add(name, "SIGKILL → standby leads (s)", t["kill_to_leader_s"])
    due = t["due_after_kill_s"]
    add(name, f"{t['due_set']['n']} renewals due after SIGKILL, first / last (s)", f"{due['min']} / {due['max']}")
    add(name, "SIGKILL → first due renewal done (s)", t["kill_to_first_due_renewal_s"])
    add(name, "SIGKILL → all due renewals done (s)", t["kill_to_all_due_renewed_s"])
    lag = t["due_renewal_lag_s"]
    add(name, "due renewals: lag (done minus due) p50 / max (s)", f"{lag['p50']} / {lag['max']}")
    add(name, "SIGKILL → new leader idle (s)", t["kill_to_idle_s"])
    add(name, "re-issuances outside the due set", t["reissues_outside_due_set"], "0")
    add(name, "new leader API requests, SIGKILL → idle", t["new_leader_api_requests_kill_to_idle_total"])
    add(name, "new leader CPU, SIGKILL → idle (s)", t["new_leader_cpu_s_kill_to_idle"])
    add(
        name,
        "new leader RSS at idle / peak (MiB)",
        f"{t['new_leader_rss_mib_at_idle']} / {t['new_leader_peak_rss_mib']}",
    )


def _issuance_rows(add: Any, name: str, r: dict[str, Any], target_rate: str) -> None:
    add(name, "wall: first create → all Ready (s)", r["wall_s"])
    add(name, "certificates/s", r["certs_per_s"], target_rate)
    add(name, "creates/s (client)", r["creates_per_s"])
    t = r["time_to_ready_s"]
    add(name, "time-to-Ready p50 / p99 (s)", f"{t['p50']} / {t['p99']}")
    per = ", ".join(f"{v} {c:g}" for v, c in r["api_requests_per_issuance"].items())
    add(name, "API requests per issuance", f"{r['api_requests_per_issuance_total']:g} ({per})")
    cpu = r["cpu"]
    add(
        name,
        "CPU s: operator / apiserver / etcd",
        f"{cpu['operator_cpu_s']} / {cpu['kube-apiserver_cpu_s']} / {cpu['etcd_cpu_s']}",
    )
    add(
        name,
        "CPU s: controller-manager / bench client",
        f"{cpu['kube-controller-manager_cpu_s']} / {cpu['bench-client_cpu_s']}",
    )
    add(name, "operator share of one core", r["operator_cpu_share_of_one_core"])
    add(name, "operator peak RSS (MiB)", r["operator_peak_rss_mib"])
    h = r["healthz_latency_ms"]
    add(name, "/healthz latency p99 / max (ms)", f"{h.get('p99')} / {h.get('max')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="reduced")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, metavar="NAME", help=f"some of: {' '.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, help="JSON file (default bench-results/bench-<timestamp>.json)")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads creating objects (default 16)")
    parser.add_argument(
        "--operator-env", action="append", default=[], metavar="KEY=VALUE", help="extra operator environment"
    )
    parser.add_argument(
        "--throughput-sizes", type=int, nargs="+", metavar="N", help="throughput runs (default: the scale's)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the operator during issuance runs (py-spy on PATH or $PY_SPY)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the workdir (etcd data) after a successful run")
    args = parser.parse_args(argv)
    scale: Scale = SCALES[args.scale]
    selected = [s for s in RUN_ORDER if not args.only or s in args.only]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out: Path = args.out or REPO / "bench-results" / f"bench-{stamp}.json"
    operator_env = dict(kv.split("=", 1) for kv in args.operator_env)

    try:
        bin_dir = (
            Path(os.environ["CERTMINT_KUBE_BIN_DIR"]) if os.environ.get("CERTMINT_KUBE_BIN_DIR") else build_binaries()
        )
    except ControlPlaneError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    py_spy = (os.environ.get("PY_SPY") or shutil.which("py-spy")) if args.profile else None
    if args.profile and not py_spy:
        print("bench: --profile needs py-spy on PATH or PY_SPY=/path/to/py-spy", file=sys.stderr)
        return 2
    workdir = REPO / ".local" / f"bench-{stamp}"
    results: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "scale": args.scale,
        "scale_parameters": scale.__dict__,
        "scenarios_selected": selected,
        "operator_env": operator_env or "defaults",
        "operator_python": "a venv with only the image's pinned runtime dependencies; certmint from operator/",
        "client_concurrency": args.concurrency,
        "profiled_with": py_spy,
        "throughput_sizes": args.throughput_sizes or list(scale.throughput_sizes),
        "workdir": str(workdir),
        "machine": machine_facts(),
        "scenarios": {},
    }
    if results["machine"]["loadavg_start"][0] > 1.5:
        log(f"WARNING: load average {results['machine']['loadavg_start'][0]:.2f} at start: numbers will be noisy")
    cp = BenchControlPlane(workdir=workdir, bin_dir=bin_dir)
    kube: Kube | None = None
    operator: BenchOperator | None = None
    ctx: Context | None = None
    failed = False
    try:
        cp.start()
        results["control_plane_timings"] = json.loads((workdir / "timings.json").read_text())
        install_crds(cp)
        kube = Kube(cp.admin_kubeconfig, args.concurrency)
        results["machine"]["kubernetes"] = kube.version()
        operator = BenchOperator(
            kubeconfig=cp.admin_kubeconfig,
            log_dir=workdir / "logs",
            namespace=OPERATOR_NAMESPACE,
            extra_env={"PYTHONPATH": str(REPO / "operator"), **operator_env},
            python=runtime_python(REPO),
        )
        operator.start()
        ca_chain(kube)
        ctx = Context(
            cp=cp,
            kube=kube,
            operator=operator,
            scale=scale,
            log=log,
            py_spy=py_spy,
            throughput_sizes=tuple(args.throughput_sizes) if args.throughput_sizes else None,
        )
        for name in selected:
            log(f"scenario {name} ({args.scale})")
            started = time.monotonic()
            try:
                results["scenarios"][name] = RUNNERS[name](ctx)
            except (BenchError, ControlPlaneError, OperatorStartError, AssertionError) as e:
                results["scenarios"][name] = {"error": str(e)}
                log(f"scenario {name} FAILED: {e}\nlogs: {workdir / 'logs'}")
                failed = True
            except Exception as e:
                results["scenarios"][name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
                log(f"scenario {name} FAILED unexpectedly:\n{traceback.format_exc()}logs: {workdir / 'logs'}")
                failed = True
            results["scenarios"].setdefault(name, {})["scenario_s"] = round(time.monotonic() - started, 1)
            if failed:
                break
    except (BenchError, ControlPlaneError, OperatorStartError) as e:
        results["setup_error"] = str(e)
        log(f"setup FAILED: {e}\nlogs: {workdir / 'logs'}")
        failed = True
    finally:
        results["machine"]["loadavg_end"] = os.getloadavg()
        if ctx is not None and ctx.operator is not operator:
            ctx.operator.stop()  # takeover hands the cluster to its standby
        if operator is not None:
            operator.stop()
        if kube is not None:
            kube.close()
        cp.stop()
        if not failed and not args.keep:
            shutil.rmtree(workdir / "etcd-data", ignore_errors=True)  # the big part; logs stay
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str, ensure_ascii=False) + "\n")
    print(table(results))
    print(f"\nJSON: {out}\nlogs: {workdir / 'logs'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
