"""The benchmark scenarios. Each returns a JSON-ready dict and raises :class:`BenchError` when it cannot finish.

The cluster is cumulative: every scenario leaves its Certificates in place (except the short-lived ones of
``renewal`` and ``takeover``, deleted at their end so that they stop renewing), and ``memory``, ``restart`` and
``takeover`` top the cluster up to their target count with long-lived ECDSA Certificates. ``throughput`` and ``rsa``
measure a fresh operator process each, started (and idle) before the first create. ``takeover`` leaves its standby,
now the leader, as the context's operator.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from certmint.controller.runtime import LEASE_NAME
from certmint.core.conditions import rfc3339
from certmint.core.renewal import renewal_time
from certmint.pki.csr import CertificateTemplate, build_csr, parse_csr
from certmint.pki.keys import PrivateKey, encode_private_key, generate_private_key
from certmint.pki.signing import SigningAuthority, SigningRequest, self_sign, sign
from certmint.settings import Settings
from tests.bench.harness import (
    SET_LABEL,
    BenchControlPlane,
    BenchError,
    BenchOperator,
    CertificateWatch,
    CpuMeter,
    Kube,
    Profiler,
    Sampler,
    bound_text,
    certificate_body,
    list_page,
    parse_time,
    proc_sample,
    ready_status,
    summary,
    wait_until,
)
from tests.controlplane.metrics import MetricSnapshot
from tests.integration.builders import API_VERSION, GROUP, VERSION, resource

ECDSA_P256 = {"algorithm": "ECDSA", "size": 256}
RSA_2048 = {"algorithm": "RSA", "size": 2048}
CA_ISSUER = "bench-ca"
OPERATOR_NAMESPACE = "certmint"


@dataclass(frozen=True)
class Scale:
    name: str
    throughput_sizes: tuple[int, ...]
    namespaces: int
    memory_certificates: int
    noise_secrets: int
    noise_secret_bytes: int
    renewal_certificates: int
    renewal_duration: str
    rsa_certificates: int
    settle_s: float  # observation window after the unrelated Secrets, and the idle-CPU baseline before them
    api_cost_requests: int  # requests of each kind in api-costs
    takeover_certificates: int = 20  # the set that falls due while the standby takes over


SCALES = {
    "reduced": Scale(
        name="reduced",
        throughput_sizes=(100,),
        namespaces=10,
        memory_certificates=200,
        noise_secrets=100,
        noise_secret_bytes=100 * 1024,
        renewal_certificates=100,
        renewal_duration="2m",
        rsa_certificates=20,
        settle_s=3.0,
        api_cost_requests=50,
    ),
    "full": Scale(
        name="full",
        throughput_sizes=(1000, 5000),
        namespaces=50,
        memory_certificates=10_000,
        noise_secrets=10_000,
        noise_secret_bytes=100 * 1024,
        renewal_certificates=2000,
        renewal_duration="10m",
        rsa_certificates=200,
        settle_s=15.0,
        api_cost_requests=1000,
    ),
}
SCENARIOS = ("throughput", "memory", "restart", "takeover", "renewal", "rsa", "api-costs")
RUN_ORDER = (
    "throughput",
    "rsa",
    "memory",
    "restart",
    "takeover",
    "api-costs",
    "renewal",
)  # renewal last: its certificates keep renewing


@dataclass
class Context:
    cp: BenchControlPlane
    kube: Kube
    operator: BenchOperator
    scale: Scale
    log: Callable[[str], None]
    py_spy: str | None = None  # profile the operator during issuance runs with this py-spy binary
    throughput_sizes: tuple[int, ...] | None = None  # overrides the scale's

    @property
    def pids(self) -> dict[str, int]:
        pids = {"operator": self.operator.pid}
        for name, proc in self.cp.processes.items():
            pids[name] = proc.pid
        return pids

    def operator_running(self) -> bool:
        return self.operator.proc is not None and self.operator.proc.poll() is None

    def count_certificates(self) -> int:
        """All Certificates in the cluster, from one list request (limit=1 plus remainingItemCount)."""
        page = list_page(self.kube.custom, None, 1)
        return len(page.get("items", [])) + int(page["metadata"].get("remainingItemCount") or 0)

    def start_operator(self) -> dict[str, float]:
        """A fresh operator process (stopping the current one gracefully), waited on until idle."""
        if self.operator_running():
            self.operator.stop()
        existing = self.count_certificates()
        self.operator.start()
        idle = self.operator.wait_idle(existing, timeout=120 + existing * 0.05)
        return {"existing_certificates": existing, "startup_to_idle_s": round(idle.at - self.operator.started_at, 2)}

    def ensure_operator(self) -> None:
        if not self.operator_running():
            self.start_operator()

    def namespaces(self, set_name: str, count: int | None = None) -> list[str]:
        names = [f"bench-{set_name}-{i:02d}" for i in range(count or self.scale.namespaces)]
        self.kube.namespaces(names)
        return names


def _clear_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, ``/proc/PID/clear_refs`` value 5) so a phase gets its own peak."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- issuance (throughput, rsa, and the top-ups) -----------------------------------------------------------------


def issue(
    ctx: Context,
    set_name: str,
    n: int,
    key: dict[str, Any],
    *,
    fresh_operator: bool,
    duration: str | None = None,
    per_cert_timeout: float = 0.2,
    watch: CertificateWatch | None = None,
) -> dict[str, Any]:
    """Create ``n`` Certificates as fast as the client can, and measure until all are Ready and the operator idle."""
    namespaces = ctx.namespaces(set_name)
    result: dict[str, Any] = {"n": n, "namespaces": len(namespaces), "private_key": key}
    if fresh_operator:
        result["operator"] = "fresh process"
        result.update(ctx.start_operator())
    else:
        ctx.ensure_operator()
        result["operator"] = "already running"
        result["existing_certificates"] = ctx.count_certificates()
        ctx.operator.wait_idle(result["existing_certificates"], timeout=300)
    existing = int(result["existing_certificates"])
    bodies = [
        certificate_body(
            f"c-{i:05d}",
            namespaces[i % len(namespaces)],
            issuer=CA_ISSUER,
            set_name=set_name,
            key=key,
            duration=duration,
        )
        for i in range(n)
    ]
    keys = [(b["metadata"]["namespace"], b["metadata"]["name"]) for b in bodies]
    op = ctx.operator
    result["peak_rss_reset"] = _clear_peak_rss(op.pid)
    own_watch = watch is None
    w = watch or CertificateWatch(ctx.kube.watch_api, f"{SET_LABEL}={set_name}").start()
    m0 = op.metrics()
    profiler = Profiler(ctx.py_spy, op.pid, ctx.cp.workdir / "profiles" / f"{set_name}.txt") if ctx.py_spy else None
    cpu = CpuMeter(ctx.pids).start()
    timeout = 60 + n * per_cert_timeout
    ctx.log(f"{set_name}: creating {n} Certificates in {len(namespaces)} namespaces (timeout {timeout:.0f}s)")
    try:
        with Sampler(op.healthz_ms, 0.1) as healthz:
            t0 = time.monotonic()
            created = ctx.kube.pool_map(ctx.kube.create, bodies)
            t_created = max(created)
            w.wait_for(
                lambda: all(k in w.ready_at for k in keys), f"{n} Certificates of set {set_name} to be Ready", timeout
            )
        t_ready = max(w.ready_at[k] for k in keys)
        idle = op.wait_idle(existing + n, timeout=120)
    finally:
        if own_watch:
            w.stop()
    cpu_used = cpu.stop()
    if profiler is not None:
        result["profile"] = profiler.stop()
    m1 = op.metrics()
    after = proc_sample(op.pid)
    delta = m1 - m0
    wall = t_ready - t0
    issued = delta.value("certmint_issuances_total")
    by_verb = delta.by("certmint_api_requests_total", "verb")
    by_resource = delta.by("certmint_api_requests_total", "verb", "resource")
    duration_hist = delta.histogram("certmint_issuance_duration_seconds")
    result.update(
        {
            "create_s": round(t_created - t0, 3),
            "creates_per_s": round(n / (t_created - t0), 1),
            "wall_s": round(wall, 3),
            "certs_per_s": round(n / wall, 1),
            "time_to_ready_s": summary([w.ready_at[k] - c for k, c in zip(keys, created, strict=True)]),
            "idle_after_last_ready_s": round(idle.at - t_ready, 3),
            "issuances": issued,
            "api_requests_per_issuance": {v: round(c / n, 2) for v, c in sorted(by_verb.items())},
            "api_requests_per_issuance_total": round(sum(by_verb.values()) / n, 2),
            "api_requests_by_verb_resource": {k: int(v) for k, v in sorted(by_resource.items())},
            "issuance_duration_p50": bound_text(duration_hist.quantile_bound(0.5), 30),
            "issuance_duration_p99": bound_text(duration_hist.quantile_bound(0.99), 30),
            "cpu": cpu_used,
            "operator_cpu_share_of_one_core": round(cpu_used["operator_cpu_s"] / cpu_used["window_s"], 2),
            "apiserver_cpu_share_of_one_core": round(cpu_used["kube-apiserver_cpu_s"] / cpu_used["window_s"], 2),
            "operator_peak_rss_mib": round(after.hwm_mib, 1),
            "operator_rss_mib_after": round(after.rss_mib, 1),
            "healthz_latency_ms": summary(healthz.values, 1),
            "healthz_failures": healthz.failures,
            "watch_events": w.events,
            "watch_relists": w.relists,
        }
    )
    if issued != n:
        raise BenchError(f"{set_name}: {n} Certificates Ready but certmint_issuances_total grew by {issued}")
    return result


def throughput(ctx: Context) -> dict[str, Any]:
    runs = []
    for n in ctx.throughput_sizes or ctx.scale.throughput_sizes:
        r = issue(ctx, f"tp{n}", n, ECDSA_P256, fresh_operator=True)
        ctx.log(f"throughput {n}: {r['certs_per_s']} certs/s, wall {r['wall_s']}s, p99 {r['time_to_ready_s']['p99']}s")
        runs.append(r)
    return {
        "mode": "cumulative cluster (each run's Certificates stay), fresh operator process per run, idle before the "
        "first create; namespaces fresh per run",
        "runs": runs,
    }


def rsa(ctx: Context) -> dict[str, Any]:
    n = ctx.scale.rsa_certificates
    r = issue(ctx, "rsa", n, RSA_2048, fresh_operator=True, per_cert_timeout=1.0)
    ctx.log(f"rsa {n}: {r['certs_per_s']} certs/s, healthz p99 {r['healthz_latency_ms'].get('p99')} ms")
    return r


def ensure_certificates(ctx: Context, target: int) -> dict[str, Any] | None:
    """Top the cluster up to ``target`` Certificates besides the CA's (long-lived ECDSA, set ``fill``)."""
    ctx.ensure_operator()
    have = ctx.count_certificates() - 1
    if have >= target:
        return None
    ctx.log(f"topping up: {have} Certificates, creating {target - have} more")
    top_up = issue(ctx, "fill", target - have, ECDSA_P256, fresh_operator=False)
    return {k: top_up[k] for k in ("n", "wall_s", "certs_per_s", "time_to_ready_s", "operator_peak_rss_mib")}


# -- memory --------------------------------------------------------------------------------------------------------


def memory(ctx: Context) -> dict[str, Any]:
    s = ctx.scale
    result: dict[str, Any] = {"target_certificates": s.memory_certificates}
    ctx.ensure_operator()
    before_burst = ctx.operator.metrics()
    result["top_up"] = ensure_certificates(ctx, s.memory_certificates)
    op = ctx.operator
    total = ctx.count_certificates()
    idle = op.wait_idle(total, timeout=300)
    result["certificates"] = total
    result["idle_poll_interval_s"] = idle.poll_interval_s
    result["rss_mib_at_idle_before_release"] = round(proc_sample(op.pid).rss_mib, 1)
    # The release comes 10-20 s after the burst's last event; measuring the top-up (time-to-Ready of
    # thousands) can take that long, so a release since the burst began counts, not only one after idle.
    result["memory_release_wait_s"] = op.wait_memory_released(before_burst if result["top_up"] else idle.metrics)

    # Idle baseline: what the operator burns doing nothing, over the same window as the settle period.
    base = CpuMeter({"operator": op.pid}).start()
    time.sleep(s.settle_s)
    idle_cpu = base.stop()
    before = proc_sample(op.pid)
    result["rss_mib_steady"] = round(before.rss_mib, 1)
    result["peak_rss_mib_so_far"] = round(before.hwm_mib, 1)
    result["operator_idle_cpu_s_per_s"] = round(idle_cpu["operator_cpu_s"] / idle_cpu["window_s"], 4)

    # The sentinel: deleting one managed Secret reaches the operator through the same label-selected Secret
    # watch that would carry the unrelated Secrets if the selector were lost; its re-issue proves delivery.
    some = list_page(ctx.kube.custom, SET_LABEL, 20)
    sentinel = next(c for c in some["items"] if ready_status(c) == "True")
    s_ns, s_name = sentinel["metadata"]["namespace"], sentinel["metadata"]["name"]
    s_rev = int(sentinel["status"]["revision"])

    noise_ns = ctx.namespaces("noise")
    names = [(noise_ns[i % len(noise_ns)], f"blob-{i:05d}") for i in range(s.noise_secrets)]
    ctx.log(f"memory: {total} Certificates, RSS {before.rss_mib:.1f} MiB; creating {len(names)} unrelated Secrets")
    _clear_peak_rss(op.pid)
    apiserver = ctx.cp.processes["kube-apiserver"].pid
    phase = CpuMeter(ctx.pids).start()
    with Sampler(lambda: proc_sample(op.pid).rss_mib, 0.25) as rss:
        t0 = time.monotonic()
        ctx.kube.pool_map(lambda nn: ctx.kube.noise_secret(nn[0], nn[1], s.noise_secret_bytes), names)
        created_s = time.monotonic() - t0
        t_sentinel = time.monotonic()
        ctx.kube.delete_secret(s_ns, f"{s_name}-tls")

        def reissued() -> bool:
            obj = ctx.kube.get("Certificate", s_name, s_ns)
            return int((obj.get("status") or {}).get("revision") or 0) > s_rev

        wait_until(reissued, "the sentinel Certificate to be re-issued after its Secret was deleted", timeout=120)
        sentinel_s = time.monotonic() - t_sentinel
        time.sleep(s.settle_s)
    used = phase.stop()
    after = proc_sample(op.pid)
    api_after = proc_sample(apiserver)
    result.update(
        {
            "unrelated_secrets": len(names),
            "unrelated_secret_bytes": s.noise_secret_bytes,
            "unrelated_total_mib": round(len(names) * s.noise_secret_bytes / 2**20, 1),
            "unrelated_create_s": round(created_s, 2),
            "sentinel": f"{s_ns}/{s_name}",
            "sentinel_reissue_s": round(sentinel_s, 3),
            "rss_mib_after": round(after.rss_mib, 1),
            "rss_mib_max_during": round(max(rss.values, default=after.rss_mib), 1),
            "peak_rss_mib_during": round(after.hwm_mib, 1),
            "rss_change_pct": round(100 * (after.rss_mib - before.rss_mib) / before.rss_mib, 1),
            "phase_cpu": used,
            "operator_cpu_s_during": used["operator_cpu_s"],
            "operator_cpu_s_idle_baseline_same_window": round(
                result["operator_idle_cpu_s_per_s"] * used["window_s"], 2
            ),
            "apiserver_rss_mib_after": round(api_after.rss_mib, 1),
        }
    )
    ctx.log(f"memory: RSS {before.rss_mib:.1f} -> {after.rss_mib:.1f} MiB, operator CPU {used['operator_cpu_s']} s")
    return result


# -- restart -------------------------------------------------------------------------------------------------------


def restart(ctx: Context) -> dict[str, Any]:
    s = ctx.scale
    result: dict[str, Any] = {"top_up": ensure_certificates(ctx, s.memory_certificates)}
    op = ctx.operator
    total = ctx.count_certificates()
    op.wait_idle(total, timeout=300)
    before = {(c["metadata"]["namespace"], c["metadata"]["name"]): c for c in ctx.kube.list_certificates()}
    not_ready = [k for k, c in before.items() if ready_status(c) != "True"]
    if not_ready:
        raise BenchError(f"restart: {len(not_ready)} Certificates not Ready before the restart, e.g. {not_ready[:3]}")
    old = proc_sample(op.pid)
    t_stop = time.monotonic()
    op.stop()
    stop_s = time.monotonic() - t_stop
    ctx.log(f"restart: stopped the operator ({total} Certificates) in {stop_s:.2f}s; starting a new one")
    op.start()
    readyz_s = time.monotonic() - op.started_at
    idle = op.wait_idle(total, timeout=120 + total * 0.05)
    to_idle = idle.at - op.started_at
    at_idle = proc_sample(op.pid)
    time.sleep(2.0)  # anything the new process still decides to do shows up here
    m = op.metrics()
    after = {(c["metadata"]["namespace"], c["metadata"]["name"]): c for c in ctx.kube.list_certificates()}
    changed = [k for k, c in after.items() if _serial(c) != _serial(before.get(k))]
    reissues = m.value("certmint_issuances_total")
    release_wait_s = op.wait_memory_released(MetricSnapshot({}))  # a new process: any release it made counts
    settled = proc_sample(op.pid)
    result.update(
        {
            "certificates": total,
            "stop_s": round(stop_s, 2),
            "old_rss_mib": round(old.rss_mib, 1),
            "readyz_s": round(readyz_s, 2),
            "time_to_idle_s": round(to_idle, 2),
            "idle_poll_interval_s": idle.poll_interval_s,
            "reissues": reissues,
            "serials_changed": len(changed),
            "api_requests_to_idle": {
                k: int(v) for k, v in sorted(idle.metrics.by("certmint_api_requests_total", "verb", "resource").items())
            },
            "operator_cpu_s_to_idle": round(at_idle.cpu_s, 2),
            "rss_mib_at_idle": round(at_idle.rss_mib, 1),
            "peak_rss_mib_to_idle": round(at_idle.hwm_mib, 1),
            "memory_release_wait_s": release_wait_s,
            "rss_mib_settled": round(settled.rss_mib, 1),
        }
    )
    if reissues != len(changed):
        raise BenchError(f"restart: certmint_issuances_total says {reissues} but {len(changed)} serials changed")
    ctx.log(f"restart: idle after {to_idle:.2f}s, {reissues:g} re-issuances")
    return result


def _serial(obj: dict[str, Any] | None) -> str | None:
    serial = ((obj or {}).get("status") or {}).get("serialNumber")
    return str(serial) if serial else None


# -- takeover ------------------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
#: The Lease settings the chart's deployment passes to the operator: (key under leaderElection in values.yaml,
#: the environment variable it sets, the operator's own default when the variable is unset).
LEASE_SETTINGS = (
    ("leaseDurationSeconds", "CERTMINT_LEASE_DURATION_SECONDS", Settings.lease_duration),
    ("renewSeconds", "CERTMINT_LEASE_RENEW_SECONDS", Settings.lease_renew),
    ("retrySeconds", "CERTMINT_LEASE_RETRY_SECONDS", Settings.lease_retry),
)
TAKEOVER_SET = "takeover"
TAKEOVER_DURATION = "1m"  # the CRD's minimum
# With the default jitter (10 % of the lifetime) and minimum renewal interval (30 s), a renewal falls due
# 30-35 s after notBefore: time to make the set Ready and see the standby take it in before the kill.
TAKEOVER_RENEW_BEFORE = datetime.timedelta(seconds=25)
KILL_BEFORE_DUE_S = 3.0  # the leader dies this long before the first of the set falls due
LEADER_POLL_S = 0.1


def chart_lease_values() -> dict[str, float]:
    """The chart's default Lease settings (values.yaml), by environment variable."""
    values = yaml.safe_load((REPO / "charts" / "certmint" / "values.yaml").read_text())["leaderElection"]
    if values.get("enabled") is not True:
        raise BenchError("takeover: the chart's default values turn leader election off")
    return {var: float(values[key]) for key, var, _ in LEASE_SETTINGS}


def lease_values(env: dict[str, str]) -> dict[str, float]:
    """The Lease settings an operator started with ``env`` uses (the variable if set, else its default)."""
    if env.get("CERTMINT_LEADER_ELECTION", "true").lower() not in ("1", "true", "yes", "on"):
        raise BenchError("takeover: the operator runs without leader election (CERTMINT_LEADER_ELECTION)")
    return {var: float(env.get(var, default)) for _, var, default in LEASE_SETTINGS}


def _count_issuers(ctx: Context) -> int:
    count = 0
    for plural in ("clusterissuers", "issuers"):
        listed = cast(dict[str, Any], ctx.kube.custom.list_cluster_custom_object(GROUP, VERSION, plural))
        count += len(listed.get("items") or [])
    return count


def takeover(ctx: Context) -> dict[str, Any]:
    """A warm standby beside the leader, the leader SIGKILLed just before a set of renewals falls due.

    Measured from the SIGKILL: the standby becoming the leader, the first and the last renewal of the set that
    fell due meanwhile (and each one's lag behind its due time), the new leader idle with every Certificate
    scheduled; its API requests, CPU and memory until then, and any re-issuance outside the set (target 0).
    """
    s = ctx.scale
    result: dict[str, Any] = {"top_up": ensure_certificates(ctx, s.memory_certificates)}
    chart = chart_lease_values()
    leader_env = lease_values(ctx.operator.extra_env)
    result["lease_settings"] = {
        "source": "charts/certmint/values.yaml leaderElection (the deployment sets them as these variables)",
        "chart_defaults": chart,
        "operator_defaults": {var: default for _, var, default in LEASE_SETTINGS},
        "bench_operator_before": leader_env,
    }
    if leader_env != chart:
        ctx.log(f"takeover: restarting the operator with the chart's Lease settings {chart} (it had {leader_env})")
        ctx.operator.stop()
        ctx.operator.extra_env.update({var: f"{v:g}" for var, v in chart.items()})
        result["leader_restart_for_chart_settings"] = ctx.start_operator()
    result["lease_settings"]["used_by_both"] = lease_values(ctx.operator.extra_env)
    op = ctx.operator
    jitter_fraction = float(op.extra_env.get("CERTMINT_JITTER_FRACTION", Settings.jitter_fraction))
    min_interval_s = float(op.extra_env.get("CERTMINT_MIN_RENEWAL_INTERVAL_SECONDS", Settings.min_renewal_interval))
    existing = ctx.count_certificates()
    op.wait_idle(existing, timeout=300)
    n = s.takeover_certificates
    selector = f"{SET_LABEL}={TAKEOVER_SET}"
    namespace = ctx.namespaces(TAKEOVER_SET, 1)[0]
    standby = BenchOperator(
        kubeconfig=op.kubeconfig,
        log_dir=op.log_dir / "takeover-standby",
        namespace=op.namespace,
        extra_env=dict(op.extra_env),
        python=op.python,
    )
    standby.log_dir.mkdir(parents=True, exist_ok=True)
    killed = False
    w = CertificateWatch(ctx.kube.watch_api, selector).start()
    try:
        ctx.log(f"takeover: starting a standby beside the leader ({existing} Certificates)")
        standby.start()
        issuers = _count_issuers(ctx)
        synced = standby.wait_standby_synced(existing, issuers, timeout=120 + existing * 0.05)
        leading = op.metrics().value("certmint_leader")
        if leading != 1:
            raise BenchError(f"takeover: the bench operator is not the leader (certmint_leader={leading:g})")
        result.update(
            {
                "standby_synced_after_start_s": round(synced.at - standby.started_at, 2),
                "standby_synced_signal": (
                    f"standby certmint_leader=0 and certmint_workqueue_depth >= Certificates + issuers "
                    f"({existing} + {issuers}; seen: depth {synced.queue_depth:g}, timers {synced.scheduled_timers:g})"
                ),
            }
        )

        renew_before = f"{TAKEOVER_RENEW_BEFORE.total_seconds():g}s"
        bodies = [
            certificate_body(
                f"t-{i:03d}",
                namespace,
                issuer=CA_ISSUER,
                set_name=TAKEOVER_SET,
                key=ECDSA_P256,
                duration=TAKEOVER_DURATION,
                renew_before=renew_before,
            )
            for i in range(n)
        ]
        keys = [(b["metadata"]["namespace"], b["metadata"]["name"]) for b in bodies]
        due_set = set(keys)
        ctx.kube.pool_map(ctx.kube.create, bodies)
        w.wait_for(lambda: all(k in w.ready_at for k in keys), f"the {n} takeover Certificates to be Ready", 60 + n)
        items = {(c["metadata"]["namespace"], c["metadata"]["name"]): c for c in ctx.kube.list_certificates(selector)}
        scheduled: dict[tuple[str, str], float] = {}
        revision: dict[tuple[str, str], int] = {}
        mismatches = 0
        for key in keys:
            st = items[key]["status"]
            exact = scheduled_renewal(
                st,
                items[key]["metadata"]["uid"],
                jitter_fraction,
                renew_before=TAKEOVER_RENEW_BEFORE,
                min_interval_s=min_interval_s,
            )
            mismatches += rfc3339(exact) != st["renewalTime"]
            scheduled[key] = exact.timestamp()
            revision[key] = int(st["revision"])
        if mismatches:
            raise BenchError(
                f"takeover: for {mismatches} of {n} Certificates the recomputed renewal time does not match "
                "status.renewalTime (did the renewal formula or the jitter key change?)"
            )
        standby.wait_standby_synced(existing + n, issuers, timeout=60)
        before = {(c["metadata"]["namespace"], c["metadata"]["name"]): c for c in ctx.kube.list_certificates()}
        not_ready = [k for k, c in before.items() if ready_status(c) != "True"]
        if not_ready:
            raise BenchError(f"takeover: {len(not_ready)} Certificates not Ready before the kill, e.g. {not_ready[:3]}")
        first_due, last_due = min(scheduled.values()), max(scheduled.values())
        left = first_due - KILL_BEFORE_DUE_S - time.time()
        if left < 0.5:
            raise BenchError(
                f"takeover: the first renewal of the set is due in {left + KILL_BEFORE_DUE_S:.1f}s, too soon to kill "
                f"the leader {KILL_BEFORE_DUE_S:g}s before it (the set was issued, or the standby caught up, late)"
            )
        ctx.log(
            f"takeover: {n} renewals due {first_due - time.time():.1f}-{last_due - time.time():.1f}s from now; "
            f"killing the leader {KILL_BEFORE_DUE_S:g}s before the first"
        )
        time.sleep(left)  # not a wait for a signal: the moment of the kill is chosen relative to the due times
        m0 = standby.metrics()
        standby_before = proc_sample(standby.pid)
        old_leader = proc_sample(op.pid)
        lease_before = ctx.kube.lease(op.namespace, LEASE_NAME)
        early = [k for k in keys if (k, revision[k] + 1) in w.revision_at]
        if early:
            raise BenchError(f"takeover: {len(early)} of the set were renewed before the kill, e.g. {early[:3]}")
        t_kill, t_kill_wall = time.monotonic(), time.time()
        op.kill()  # SIGKILL
        killed = True
        ctx.operator = standby  # from here on the standby is the cluster's only operator
        lease_s = chart["CERTMINT_LEASE_DURATION_SECONDS"]
        t_leader = standby.wait_leading(timeout=2 * lease_s + 60, interval=LEADER_POLL_S)
        lease_after = ctx.kube.lease(op.namespace, LEASE_NAME)
        w.wait_for(
            lambda: all((k, revision[k] + 1) in w.revision_at for k in keys),
            f"the {n} Certificates due during the takeover to be renewed",
            timeout=max(0.0, last_due - time.time()) + 120 + existing * 0.05,
        )
        done = {k: w.revision_at[(k, revision[k] + 1)] for k in keys}
        total = ctx.count_certificates()
        idle = standby.wait_idle(total, timeout=120 + total * 0.05)
        at_idle = proc_sample(standby.pid)
        after = {(c["metadata"]["namespace"], c["metadata"]["name"]): c for c in ctx.kube.list_certificates()}
    finally:
        w.stop()
        if not killed:
            standby.stop()
        with contextlib.suppress(Exception):  # clean-up only: they would keep renewing
            ctx.kube.delete_certificates([namespace], selector)

    delta = idle.metrics - m0
    changed = [k for k, c in after.items() if k not in due_set and _serial(c) != _serial(before.get(k))]
    gained = {k: int(after[k]["status"]["revision"]) - revision[k] for k in keys if k in after}
    requests = {k: int(v) for k, v in sorted(delta.by("certmint_api_requests_total", "verb", "resource").items()) if v}
    lag_metric = delta.histogram("certmint_renewal_lag_seconds")
    lags = [done[k] - scheduled[k] for k in keys]
    renew_time = lease_before["renew_time"]
    result.update(
        {
            "certificates": total,
            "due_set": {
                "n": n,
                "namespace": namespace,
                "duration": TAKEOVER_DURATION,
                "renewBefore": renew_before,
                "jitter_fraction": jitter_fraction,
                "min_renewal_interval_s": min_interval_s,
            },
            "kill_before_first_due_s": KILL_BEFORE_DUE_S,
            "old_leader_rss_mib_at_kill": round(old_leader.rss_mib, 1),
            "standby_rss_mib_at_kill": round(standby_before.rss_mib, 1),
            "standby_cpu_s_before_kill": round(standby_before.cpu_s, 2),
            "lease_before_kill": {
                "holder": lease_before["holder"],
                "lease_duration_s": lease_before["lease_duration_s"],
                "last_renewal_before_kill_s": round(t_kill_wall - renew_time, 3) if renew_time else None,
            },
            "lease_expiry_after_kill_s": (
                round(renew_time + float(lease_before["lease_duration_s"] or lease_s) - t_kill_wall, 3)
                if renew_time
                else None
            ),
            "lease_after": {k: lease_after[k] for k in ("holder", "transitions")},
            "kill_to_lease_acquired_s": (
                round(lease_after["acquire_time"] - t_kill_wall, 3) if lease_after["acquire_time"] else None
            ),
            "kill_to_leader_s": round(t_leader - t_kill, 3),
            # The Lease runs out lease-renew..lease s after the kill (where the kill falls between two renewals),
            # and the standby looks every retry s.
            "kill_to_leader_expected_range_s": [
                round(lease_s - chart["CERTMINT_LEASE_RENEW_SECONDS"], 3),
                round(lease_s + chart["CERTMINT_LEASE_RETRY_SECONDS"], 3),
            ],
            "leader_poll_interval_s": LEADER_POLL_S,
            "due_after_kill_s": summary([scheduled[k] - t_kill_wall for k in keys]),
            "kill_to_first_due_renewal_s": round(min(done.values()) - t_kill_wall, 3),
            "kill_to_all_due_renewed_s": round(max(done.values()) - t_kill_wall, 3),
            "due_renewal_lag_s": summary(lags),
            "due_renewals": [
                {
                    "name": f"{k[0]}/{k[1]}",
                    "due_s": round(scheduled[k] - t_kill_wall, 3),
                    "renewed_s": round(done[k] - t_kill_wall, 3),
                    "lag_s": round(done[k] - scheduled[k], 3),
                }
                for k in sorted(keys, key=lambda k: scheduled[k])
            ],
            "due_set_revisions_gained": sum(gained.values()),
            "kill_to_idle_s": round(idle.at - t_kill, 2),
            "idle_poll_interval_s": idle.poll_interval_s,
            "reissues_outside_due_set": len(changed),
            "new_leader_issuances_by_trigger": {
                k: int(v) for k, v in sorted(delta.by("certmint_issuances_total", "trigger").items()) if v
            },
            "new_leader_renewal_lag_metric_max": bound_text(lag_metric.max_bound()),
            "new_leader_api_requests_kill_to_idle": requests,
            "new_leader_api_requests_kill_to_idle_total": sum(requests.values()),
            "new_leader_cpu_s_kill_to_idle": round(at_idle.cpu_s - standby_before.cpu_s, 2),
            "new_leader_rss_mib_at_idle": round(at_idle.rss_mib, 1),
            "new_leader_peak_rss_mib": round(at_idle.hwm_mib, 1),
            "measure_note": (
                "times in seconds after the SIGKILL (client clock = the operators' clock, one machine); leader: "
                f"the standby's certmint_leader polled every {LEADER_POLL_S:g}s, cross-checked by the Lease's "
                "acquireTime; renewals: a watch on the set, the moment status.revision+1 was seen (includes the whole "
                "issuance and watch delivery); due: the exact renewal time recomputed from each certificate; "
                "idle: certmint_leader=1, empty queue, a timer per Certificate on two polls; api requests, CPU: the "
                "new leader's counters from just before the kill to idle (including its Lease requests)"
            ),
        }
    )
    if changed:
        ctx.log(f"takeover: {len(changed)} Certificates outside the due set were re-issued, e.g. {changed[:3]}")
    r, lag = result, result["due_renewal_lag_s"]
    ctx.log(
        f"takeover: after the SIGKILL: leader {r['kill_to_leader_s']}s, first due renewal "
        f"{r['kill_to_first_due_renewal_s']}s, all {r['kill_to_all_due_renewed_s']}s (lag p50/max {lag['p50']}/"
        f"{lag['max']}s), idle {r['kill_to_idle_s']}s"
    )
    return result


# -- renewal -------------------------------------------------------------------------------------------------------


def scheduled_renewal(
    status: dict[str, Any],
    uid: str,
    jitter_fraction: float,
    *,
    renew_before: datetime.timedelta | None = None,
    min_interval_s: float = Settings.min_renewal_interval,
) -> datetime.datetime:
    """The exact moment the operator scheduled (status.renewalTime is rounded down to the second).

    The operator's own pure function on the certificate's validity (whole seconds in X.509, as in status) and the
    jitter key it uses ("<uid>/<serial>"), for Certificates with ``renew_before`` or neither renewBefore nor
    renewBeforePercentage.
    """
    return renewal_time(
        datetime.datetime.fromtimestamp(parse_time(status["notBefore"]), datetime.UTC),
        datetime.datetime.fromtimestamp(parse_time(status["notAfter"]), datetime.UTC),
        renew_before=renew_before,
        renew_before_percentage=None,
        jitter_key=f"{uid}/{status['serialNumber']}",
        max_jitter_fraction=jitter_fraction,
        min_interval=datetime.timedelta(seconds=min_interval_s),
    )


def renewal(ctx: Context) -> dict[str, Any]:
    s = ctx.scale
    n = s.renewal_certificates
    set_name = "renew"
    jitter_fraction = float(ctx.operator.extra_env.get("CERTMINT_JITTER_FRACTION", Settings.jitter_fraction))
    ctx.ensure_operator()
    w = CertificateWatch(ctx.kube.watch_api, f"{SET_LABEL}={set_name}").start()
    try:
        issued = issue(ctx, set_name, n, ECDSA_P256, fresh_operator=False, duration=s.renewal_duration, watch=w)
        items = ctx.kube.list_certificates(f"{SET_LABEL}={set_name}")
        keys = [(c["metadata"]["namespace"], c["metadata"]["name"]) for c in items]
        scheduled: dict[tuple[str, str], float] = {}
        jitter, not_before, rounding_mismatches = [], [], 0
        for key, c in zip(keys, items, strict=True):
            st = c["status"]
            if st.get("revision") != 1:
                raise BenchError(f"renewal: {key} is at revision {st.get('revision')} before its renewal")
            exact = scheduled_renewal(st, c["metadata"]["uid"], jitter_fraction)
            if rfc3339(exact) != st["renewalTime"]:
                rounding_mismatches += 1
            scheduled[key] = exact.timestamp()
            nb, na = parse_time(st["notBefore"]), parse_time(st["notAfter"])
            not_before.append(nb)
            jitter.append((na - (na - nb) / 3) - exact.timestamp())  # the 1/3-before-expiry point minus the actual
        if rounding_mismatches:
            raise BenchError(
                f"renewal: for {rounding_mismatches} of {n} Certificates the recomputed renewal time does not match "
                "status.renewalTime (did the renewal formula or the jitter key change?)"
            )
        times = list(scheduled.values())
        first, last = min(times), max(times)
        m0 = ctx.operator.metrics()
        timeout = max(0.0, last - time.time()) + 60 + n * 0.2
        ctx.log(f"renewal: {n} renewals due within {last - first:.1f}s, the last in {last - time.time():.0f}s")
        w.wait_for(lambda: all((k, 2) in w.revision_at for k in keys), f"{n} Certificates to reach revision 2", timeout)
        total = ctx.count_certificates()
        ctx.operator.wait_idle(total, timeout=120)
        delta = ctx.operator.metrics() - m0
    finally:
        w.stop()
    lag = delta.histogram("certmint_renewal_lag_seconds")
    sched = delta.histogram("certmint_scheduler_lag_seconds")
    client_lag = [w.revision_at[(k, 2)] - scheduled[k] for k in keys]
    renewed = delta.value("certmint_issuances_total", trigger="Renewed")
    mean = sum(times) / n
    result = {
        "n": n,
        "duration": s.renewal_duration,
        "jitter_fraction": jitter_fraction,
        "issuance": {k: issued[k] for k in ("wall_s", "certs_per_s", "time_to_ready_s")},
        "not_before_spread_s": round(max(not_before) - min(not_before), 3),
        "renewal_time_spread_s": round(last - first, 3),
        "renewal_time_stddev_s": round(math.sqrt(sum((t - mean) ** 2 for t in times) / n), 3),
        "jitter_s": summary(jitter),
        "renewed": renewed,
        "renewal_lag_observations": lag.count,
        "renewal_lag_p50": bound_text(lag.quantile_bound(0.5)),
        "renewal_lag_p99": bound_text(lag.quantile_bound(0.99)),
        "renewal_lag_max": bound_text(lag.max_bound()),
        "renewal_lag_mean_s": round(lag.sum / lag.count, 4) if lag.count else None,
        "scheduler_lag_p99": bound_text(sched.quantile_bound(0.99), 5),
        "scheduler_lag_max": bound_text(sched.max_bound(), 5),
        "client_renewed_minus_scheduled_s": summary(client_lag),
        "client_measure_note": "watch: the moment status.revision 2 was seen minus the exact scheduled renewal time "
        "(recomputed from the certificate; status.renewalTime, which it matches, is rounded down to the second); "
        "includes the whole issuance (key, CSR, CertificateRequest, Secret, status write) and watch delivery",
    }
    if renewed != n or lag.count != n:
        raise BenchError(
            f"renewal: {n} reached revision 2 but Renewed issuances={renewed}, lag observations={lag.count}"
        )
    with contextlib.suppress(Exception):  # clean-up only: they would keep renewing
        ctx.kube.delete_certificates(sorted({k[0] for k in keys}), f"{SET_LABEL}={set_name}")
    c = summary(client_lag)
    ctx.log(f"renewal: lag p99 {result['renewal_lag_p99']} (metric), client p50/p99 {c['p50']}/{c['p99']}s")
    return result


# -- what one issuance costs the control plane, request by request ------------------------------------------------


def _pki_payloads() -> dict[str, str]:
    """What the operator writes for one certificate, made by its own PKI core: root → CA → leaf (ECDSA P-256),
    so the CSR, the chain (leaf + CA), the trust anchor and the key have the sizes of a real issuance."""
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)

    def request(key: PrivateKey, template: CertificateTemplate, is_ca: bool) -> tuple[bytes, SigningRequest]:
        csr = build_csr(key, template)
        usages = ("digital signature", "cert sign") if is_ca else ("digital signature", "key encipherment")
        return csr, SigningRequest(csr=parse_csr(csr), duration=day, usages=usages, is_ca=is_ca)

    root_key, ca_key, leaf_key = (generate_private_key("ECDSA", 256) for _ in range(3))
    root = self_sign(request(root_key, CertificateTemplate(common_name="bench root"), True)[1], root_key, now=now)
    ca = sign(
        request(ca_key, CertificateTemplate(common_name="bench CA"), True)[1],
        SigningAuthority(certificate=root.certificate, key=root_key),
        now=now,
    )
    csr, leaf_request = request(leaf_key, CertificateTemplate(dns_names=("svc.bench-apicost.svc",)), False)
    leaf = sign(
        leaf_request, SigningAuthority(certificate=ca.certificate, key=ca_key, chain=(root.certificate,)), now=now
    )
    return {
        "csr": csr.decode(),
        "chain": leaf.chain_pem.decode(),
        "ca": leaf.ca_pem.decode(),
        "key": encode_private_key(leaf_key, "PKCS8").decode(),
    }


def api_costs(ctx: Context) -> dict[str, Any]:
    """CPU the API server, etcd and the controller manager spend per request, for each request of one issuance.

    The operator is stopped meanwhile (nothing reacts to these objects); each kind of request is sent ``n``
    times from the client pool, in the order an issuance sends them, and the processes' CPU is read around
    each batch. This is what bounds throughput on a shared machine: the sum is the control plane's price of
    one certificate whatever the operator does.
    """
    n = ctx.scale.api_cost_requests
    if ctx.operator_running():
        ctx.operator.stop()
    ns = "bench-apicost"
    ctx.kube.namespaces([ns])
    p = _pki_payloads()
    b64 = {k: base64.b64encode(v.encode()).decode() for k, v in p.items()}
    stamp = rfc3339(datetime.datetime.now(datetime.UTC))
    custom, core = ctx.kube.custom, ctx.kube.core

    def condition(type_: str, reason: str, message: str, generation: int | None = None) -> dict[str, Any]:
        """A condition as the operator writes it (status True unless Issuing)."""
        status = "False" if type_ == "Issuing" else "True"
        c = {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": stamp}
        return c if generation is None else {**c, "observedGeneration": generation}

    def cert_status(i: int) -> dict[str, Any]:
        message = (
            f"Issued certificate serial {i:040x} (revision 1, CertificateRequest c-{i:05d}-x), valid until {stamp}"
        )
        times = {"notBefore": stamp, "notAfter": stamp, "renewalTime": stamp}
        conditions = [condition("Ready", "Issued", "up to date", 1), condition("Issuing", "Issued", message, 1)]
        status = {
            **times,
            "serialNumber": f"{i:040x}",
            "revision": 1,
            "observedGeneration": 1,
            "conditions": conditions,
        }
        return {"status": status}

    def request_body(i: int) -> dict[str, Any]:
        spec = {
            "request": p["csr"],
            "issuerRef": {"name": CA_ISSUER, "kind": "ClusterIssuer", "group": "certmint.dev"},
            "duration": "2160h",
            "usages": ["digital signature", "server auth"],  # what RFC 8813 allows an ECDSA key
            "isCA": False,
        }
        return resource("CertificateRequest", f"r-{i:05d}", spec, ns, {"certmint.dev/certificate-name": f"c-{i:05d}"})

    conditions = [condition("Approved", "PolicyAllowed", "allowed"), condition("Ready", "Issued", "signed")]
    request_status = {
        "status": {
            "conditions": conditions,
            "certificate": p["chain"],
            "ca": p["ca"],
            "notBefore": stamp,
            "notAfter": stamp,
        }
    }

    def secret_body(i: int, revision: int = 1) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {
                "name": f"c-{i:05d}-tls",
                "labels": {"certmint.dev/certificate-name": f"c-{i:05d}"},
                "annotations": {"certmint.dev/issuer-name": CA_ISSUER, "certmint.dev/serial": f"{revision}{i:039x}"},
            },
            "data": {"tls.crt": b64["chain"], "tls.key": b64["key"], "ca.crt": b64["ca"]},
        }

    def event_body(i: int) -> dict[str, Any]:
        return {
            "metadata": {"generateName": f"c-{i:05d}."},
            "involvedObject": {"kind": "Certificate", "namespace": ns, "name": f"c-{i:05d}", "apiVersion": API_VERSION},
            "reason": "Issued",
            "message": f"Issued certificate serial {i:040x}",
            "type": "Normal",
            "source": {"component": "certmint"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }

    g, v = GROUP, VERSION
    steps: list[tuple[str, Callable[[int], Any]]] = [
        (
            "create Certificate (the user)",
            lambda i: custom.create_namespaced_custom_object(
                g,
                v,
                ns,
                "certificates",
                certificate_body(f"c-{i:05d}", ns, issuer=CA_ISSUER, set_name="apicost", key=ECDSA_P256),
            ),
        ),
        (
            "create CertificateRequest",
            lambda i: custom.create_namespaced_custom_object(g, v, ns, "certificaterequests", request_body(i)),
        ),
        (
            "patch CertificateRequest status",
            lambda i: custom.patch_namespaced_custom_object_status(
                g, v, ns, "certificaterequests", f"r-{i:05d}", request_status
            ),
        ),
        ("create Secret", lambda i: core.create_namespaced_secret(ns, secret_body(i))),
        (
            "patch Certificate status",
            lambda i: custom.patch_namespaced_custom_object_status(
                g, v, ns, "certificates", f"c-{i:05d}", cert_status(i)
            ),
        ),
        ("create Event", lambda i: core.create_namespaced_event(ns, event_body(i))),
        ("get Secret (renewal only)", lambda i: core.read_namespaced_secret(f"c-{i:05d}-tls", ns)),
        # A renewal replaces the Secret and, past revisionHistoryLimit, prunes the oldest CertificateRequest.
        (
            "replace Secret (renewal)",
            lambda i: core.patch_namespaced_secret(f"c-{i:05d}-tls", ns, secret_body(i, revision=2)),
        ),
        (
            "list a Certificate's CertificateRequests (pruning)",
            lambda i: custom.list_namespaced_custom_object(
                g, v, ns, "certificaterequests", label_selector=f"certmint.dev/certificate-name=c-{i:05d}"
            ),
        ),
        (
            "delete CertificateRequest (pruning)",
            lambda i: custom.delete_namespaced_custom_object(g, v, ns, "certificaterequests", f"r-{i:05d}"),
        ),
    ]
    pids = {name: proc.pid for name, proc in ctx.cp.processes.items()}
    per_request: dict[str, dict[str, float]] = {}
    for label, fn in steps:
        cpu = CpuMeter(pids).start()
        ctx.kube.pool_map(fn, list(range(n)))
        used = cpu.stop()
        per_request[label] = {
            k.removesuffix("_cpu_s"): round(val / n * 1000, 2) for k, val in used.items() if k != "bench-client_cpu_s"
        }
        per_request[label]["window_s"] = used["window_s"]
        ctx.log(f"api-costs: {label}: {per_request[label]} (ms per request)")
    issuance = [label for label, _ in steps[:6]]
    # A renewal sends the same requests but replaces the Secret and prunes; the user creates nothing.
    renewal = [label for label, _ in steps[1:3] + steps[4:]]

    def total(labels: list[str]) -> dict[str, float]:
        return {
            proc: round(sum(per_request[label][proc] for label in labels), 1)
            for proc in ("kube-apiserver", "etcd", "kube-controller-manager")
        }

    # Later scenarios count every Certificate in the cluster: these must be gone, not just Terminating.
    cleanup_s = ctx.kube.delete_namespace_and_wait(ns)
    return {
        "n_per_request_kind": n,
        "client_concurrency": ctx.kube.concurrency,
        "cpu_ms_per_request": per_request,
        "one_issuance_cpu_ms": total(issuance),
        "one_issuance_requests": issuance,
        "one_renewal_cpu_ms": total(renewal),
        "one_renewal_requests": renewal,
        "note": "the operator's five writes plus the user's create, sent without the operator; window_s is wall time",
        "cleanup_s": cleanup_s,
    }


RUNNERS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "throughput": throughput,
    "memory": memory,
    "restart": restart,
    "takeover": takeover,
    "renewal": renewal,
    "rsa": rsa,
    "api-costs": api_costs,
}
