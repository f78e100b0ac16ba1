"""Measuring instruments for the benchmarks.

- :class:`BenchControlPlane`: the project's control plane with an etcd quota large enough for 1 GiB of Secrets.
- :class:`BenchOperator`: ``python -m certmint`` in its own process, started as users start it (no ``--verbose``).
- :func:`proc_sample`: CPU seconds and memory of any PID, from ``/proc``.
- :class:`CertificateWatch`: one watch on Certificates (all namespaces, one label selector), recording when each
  one first became Ready and when each revision first appeared.
- :class:`Kube`: the thread-pooled writes (namespaces, Certificates, Secrets) and the paged reads a benchmark needs.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tests.controlplane.cluster import ControlPlane
from tests.controlplane.metrics import MetricSnapshot
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import GROUP, VERSION, Certmint, certificate
from tests.integration.kubeutil import wait_for

T = TypeVar("T")
SET_LABEL = "bench.certmint.dev/set"
CLK_TCK = os.sysconf("SC_CLK_TCK")
STALL_S = 20.0  # an empty queue with a timer count that does not move for this long will not become idle


class BenchError(RuntimeError):
    """A phase did not finish in time or produced inconsistent results; the message says which and why."""


def wait_until(predicate: Callable[[], T | None], what: str, timeout: float, interval: float = 0.25) -> T:
    """:func:`wait_for` for the benchmarks: API and connection errors mean "not yet"; :class:`BenchError` at the end."""
    value = wait_for(predicate, what, timeout, interval, transient=(ApiException, OSError), error=BenchError)
    assert value is not None
    return value


# -- processes ---------------------------------------------------------------------------------------------------


class BenchControlPlane(ControlPlane):
    """The test control plane; etcd gets a 8 GiB backend quota (default 2 GiB) for the 1 GiB of unrelated Secrets."""

    ETCD_QUOTA_BYTES = 8 * 1024**3

    def _spawn(self, name: str, argv: list[str]) -> None:
        if name == "etcd":
            argv = [*argv, f"--quota-backend-bytes={self.ETCD_QUOTA_BYTES}"]
        super()._spawn(name, argv)


def runtime_python(repo: Path) -> str:
    """An interpreter with only the image's runtime dependencies (the pinned lock), as the image has.

    The development venv also holds the test-only ``kubernetes`` client, which kopf imports when it is
    installed (about 18 MiB of RSS the operator never uses in its image): measuring there would charge
    the operator for the test tooling. certmint itself comes from ``operator/`` through PYTHONPATH,
    so the venv is only rebuilt when the lock changes.
    """
    lock = repo / "operator" / "requirements.lock"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:12]
    venv = repo / ".local" / f"runtime-venv-{digest}"
    python = venv / "bin" / "python"
    complete = venv / "complete"
    if not complete.exists():
        shutil.rmtree(venv, ignore_errors=True)  # a half-built one from an interrupted run
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(lock)], check=True)
        subprocess.run([str(python), "-m", "pip", "check"], check=True)
        complete.touch()
    return str(python)


#: What wait_idle polls (the whole of /metrics is scraped once, when idle: IdleResult.metrics).
IDLE_GAUGES = ("certmint_leader", "certmint_workqueue_depth", "certmint_scheduled_timers")


@dataclass
class BenchOperator(OperatorProcess):
    """``OperatorProcess`` at INFO (debug logging would be part of what we measure), polled finely for start-up."""

    verbose: bool = False
    ready_poll_s: float = 0.05

    @property
    def pid(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            raise BenchError(f"the operator is not running; log: {self.log_path}")
        return self.proc.pid

    def metrics(self, *names: str) -> MetricSnapshot:
        """The operator's metrics; with ``names`` only those (``/metrics?name[]=...``): an operator that serves
        the filter does not collect its per-certificate series for such a poll, one that does not sends all."""
        query = "&".join(f"name[]={name}" for name in names)
        status, text = self.get(f"/metrics?{query}" if query else "/metrics")
        if status != 200:
            raise BenchError(f"operator /metrics answered {status}; log: {self.log_path}")
        # Per-certificate gauges are the bulk of the text and nothing here needs them.
        return MetricSnapshot.parse(text, skip_prefix="certmint_certificate_")

    def wait_idle(self, min_timers: int, timeout: float) -> IdleResult:
        """Wait until the operator leads, its queue is empty and at least ``min_timers`` timers are pending.

        The signal is the operator's own gauges (certmint_leader, certmint_workqueue_depth,
        certmint_scheduled_timers), polled from /metrics. A scrape costs the operator CPU that grows with the
        number of certificates (per-certificate series), so the interval is a multiple of the scrape time; the polls
        ask for those three gauges only, which an operator that serves ``name[]`` answers without collecting
        the per-certificate series.
        """
        started = time.monotonic()
        polls = 0
        first_idle: float | None = None
        interval = 0.2
        deadline = started + timeout
        last: MetricSnapshot | None = None
        stuck = (-1.0, started)  # (timers, since): the queue empty and the timer count not moving
        while True:
            t0 = time.monotonic()
            last = self.metrics(*IDLE_GAUGES)
            scrape = time.monotonic() - t0
            polls += 1
            idle = (
                last.value("certmint_leader") == 1
                and last.value("certmint_workqueue_depth") == 0
                and last.value("certmint_scheduled_timers") >= min_timers
            )
            if idle:
                if first_idle is None:
                    first_idle = t0
                else:  # idle on two consecutive polls: not a momentary gap between batches
                    return IdleResult(first_idle - started, first_idle, polls, interval, self.metrics())
            else:
                first_idle = None
            timers = last.value("certmint_scheduled_timers")
            if last.value("certmint_workqueue_depth") != 0 or timers != stuck[0]:
                stuck = (timers, time.monotonic())
            elif time.monotonic() - stuck[1] > STALL_S and last.value("certmint_leader") == 1:
                raise BenchError(
                    f"the operator's queue has been empty for {STALL_S:.0f}s with {timers:g} timers for "
                    f"{min_timers} Certificates: {min_timers - timers:g} have neither a timer nor pending work "
                    f"({self._unexpected_failures()} 'failed unexpectedly' in {self.log_path})"
                )
            if time.monotonic() > deadline:
                raise BenchError(
                    f"operator not idle after {timeout:.0f}s (want leader=1, depth=0, timers>={min_timers}; now "
                    f"leader={last.value('certmint_leader')}, depth={last.value('certmint_workqueue_depth')}, "
                    f"timers={timers:g}); log: {self.log_path}"
                )
            interval = min(2.0, max(0.2, 5 * scrape))
            time.sleep(interval)

    def wait_memory_released(self, since: MetricSnapshot, timeout: float = 90.0) -> float:
        """Wait until the operator has handed a settled burst's free memory back (its own counter moves).

        It does so 10-20 s after the last event or reconcile; RSS measured before that would report
        the burst's high-water mark instead of what the operator holds. Returns the seconds waited.
        """
        started = time.monotonic()
        name = "certmint_memory_releases_total"
        wait_until(
            lambda: self.metrics().value(name) > since.value(name) or None,
            "the operator to release memory after the burst",
            timeout=timeout,
            interval=1.0,
        )
        return round(time.monotonic() - started, 1)

    def wait_leading(self, timeout: float, interval: float = 0.1) -> float:
        """Poll ``certmint_leader`` every ``interval`` seconds until it is 1; returns time.monotonic() of that poll.

        Meant for a standby waiting to take over: its /metrics carries no per-certificate series until it has
        reconciled, so a fine interval costs it little.
        """
        deadline = time.monotonic() + timeout
        while True:
            t0 = time.monotonic()
            if self.metrics().value("certmint_leader") == 1:
                return t0
            if t0 > deadline:
                raise BenchError(f"the operator did not become the leader in {timeout:.0f}s; log: {self.log_path}")
            time.sleep(interval)

    def wait_standby_synced(self, certificates: int, issuers: int, timeout: float) -> StandbyResult:
        """Wait until this replica, not leading, has seen every one of ``certificates`` Certificates and
        ``issuers`` Issuers/ClusterIssuers.

        No metric says "standby synced". A standby's work queue is not started, so every object its watches
        deliver stays queued as one key (a Secret's events land on its Certificate's key, a CA Secret's on its
        issuer's): certmint_workqueue_depth counts the objects it has seen. Should a standby come to keep
        timers instead (rebuilt from status as it goes), certmint_scheduled_timers counts its Certificates.
        Either reaching the count is the signal; a standby that leads instead is an error.
        """
        started = time.monotonic()
        deadline = started + timeout
        polls = 0
        while True:
            t0 = time.monotonic()
            m = self.metrics()
            polls += 1
            if m.value("certmint_leader") != 0:
                raise BenchError(
                    f"the standby leads (certmint_leader={m.value('certmint_leader')}); log: {self.log_path}"
                )
            depth, timers = m.value("certmint_workqueue_depth"), m.value("certmint_scheduled_timers")
            if depth >= certificates + issuers or timers >= certificates:
                return StandbyResult(t0 - started, t0, polls, depth, timers, m)
            if t0 > deadline:
                raise BenchError(
                    f"the standby has not seen {certificates} Certificates and {issuers} issuers after "
                    f"{timeout:.0f}s (queue depth {depth:g}, timers {timers:g}); log: {self.log_path}"
                )
            time.sleep(0.25)

    def _unexpected_failures(self) -> int:
        try:
            return self.log_path.read_text(errors="replace").count("failed unexpectedly")
        except OSError:
            return 0

    def healthz_ms(self) -> float | None:
        """Latency of /healthz, which the operator's event loop serves: a direct measure of loop stalls."""
        t0 = time.perf_counter()
        status, _ = self.get("/healthz")
        return (time.perf_counter() - t0) * 1000 if status == 200 else None


@dataclass(frozen=True)
class IdleResult:
    after_s: float  # from the call until the first of the two idle polls
    at: float  # time.monotonic() of that poll
    polls: int
    poll_interval_s: float
    metrics: MetricSnapshot


@dataclass(frozen=True)
class StandbyResult:
    after_s: float  # from the call until the poll that saw the count
    at: float  # time.monotonic() of that poll
    polls: int
    queue_depth: float
    scheduled_timers: float
    metrics: MetricSnapshot


@dataclass(frozen=True)
class ProcSample:
    cpu_s: float  # utime + stime
    rss_mib: float  # VmRSS
    hwm_mib: float  # VmHWM: peak RSS over the process's life


def proc_sample(pid: int) -> ProcSample:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    mem: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            mem[key] = int(value.split()[0]) / 1024
    return ProcSample(cpu, mem.get("VmRSS", 0.0), mem.get("VmHWM", 0.0))


def self_cpu_s() -> float:
    """CPU seconds of this benchmark process (all its threads): the load generator's own cost."""
    t = os.times()
    return t.user + t.system


class CpuMeter:
    """CPU seconds consumed by several processes between ``start`` and ``stop``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}
        self.started = 0.0

    def start(self) -> CpuMeter:
        self.before = {name: proc_sample(pid).cpu_s for name, pid in self.pids.items()}
        self.before["bench-client"] = self_cpu_s()
        self.started = time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.started
        now = {name: proc_sample(pid).cpu_s for name, pid in self.pids.items()}
        now["bench-client"] = self_cpu_s()
        result = {f"{name}_cpu_s": round(now[name] - self.before[name], 2) for name in now}
        result["window_s"] = round(elapsed, 2)
        return result


class Sampler:
    """Samples a function every ``interval`` seconds in a thread (RSS, /healthz latency) until stopped."""

    def __init__(self, fn: Callable[[], float | None], interval: float) -> None:
        self.fn = fn
        self.interval = interval
        self.values: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-sampler")

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                v = self.fn()
            except (OSError, BenchError):
                v = None
            if v is None:
                self.failures += 1
            else:
                self.values.append(v)


class Profiler:
    """``py-spy record`` on one PID (raw collapsed stacks), summarised as the functions with the most samples.

    py-spy samples from outside the process; it costs the machine some CPU of its own, so profiled runs are marked.
    """

    def __init__(self, py_spy: str, pid: int, output: Path, rate: int = 100) -> None:
        self.output = output
        output.parent.mkdir(parents=True, exist_ok=True)
        self._log = output.with_suffix(".log").open("wb")
        self.proc = subprocess.Popen(
            # --gil: only the thread holding the GIL, i.e. where the process's Python CPU goes
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--gil",
                "--format",
                "raw",
                "--output",
                str(output),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self, top: int = 15) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return summarise_collapsed(self.output, top) | {"raw": str(self.output)}


# Frames on every stack (the event loop, thread bootstrap): their inclusive share says nothing.
_PLUMBING = ("asyncio/", "runpy", "threading.py", "concurrent/futures", "selectors.py", "kopf/_core/reactor/running")


def summarise_collapsed(path: Path, top: int) -> dict[str, Any]:
    """Self and inclusive sample shares per function from collapsed stacks ("frame;frame;frame count")."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {"error": f"no profile written to {path}"}
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]  # per function, not per line
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for f in set(frames):
            if not any(p in f for p in _PLUMBING):
                inclusive[f] = inclusive.get(f, 0) + count

    def share(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(f, round(100 * c / total, 1)) for f, c in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"samples": total, "self_pct": share(own), "inclusive_pct": share(inclusive)}


def bound_text(bound: float | None, last_finite: float = 10.0) -> str:
    if bound is None:
        return "n/a"
    if math.isinf(bound):
        return f"> {last_finite:g} s"
    return f"≤ {bound:g} s"


# -- statistics ----------------------------------------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    data = sorted(values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summary(values: list[float], digits: int = 3) -> dict[str, float]:
    if not values:
        return {"count": 0}
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return {
        "count": len(values),
        "min": round(min(values), digits),
        "p50": round(percentile(values, 0.5), digits),
        "p99": round(percentile(values, 0.99), digits),
        "max": round(max(values), digits),
        "mean": round(mean, digits),
        "stddev": round(std, digits),
    }


def parse_time(text: str) -> float:
    """RFC 3339 (as the operator writes status times) to Unix seconds."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- Kubernetes ----------------------------------------------------------------------------------------------------


def api_client(kubeconfig: Path, pool: int) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
    cfg.connection_pool_maxsize = pool
    return client.ApiClient(cfg)


def list_page(
    custom: client.CustomObjectsApi, label_selector: str | None, limit: int, cont: str | None = None
) -> dict[str, Any]:
    """One page of Certificates in all namespaces (``remainingItemCount`` and ``continue`` in its metadata)."""
    given = {k: v for k, v in {"limit": limit, "_continue": cont, "label_selector": label_selector}.items() if v}
    return cast(dict[str, Any], custom.list_cluster_custom_object(GROUP, VERSION, "certificates", **given))


def ready_status(obj: dict[str, Any]) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("status"))
    return None


ObjKey = tuple[str, str]


@dataclass
class CertificateWatch:
    """A watch on Certificates with one label, in every namespace, started before the objects are created.

    Records (client clock): ``ready_at[key]`` = time.monotonic() when Ready=True was first seen;
    ``revision_at[(key, rev)]`` = time.time() when status.revision == rev was first seen;
    ``renewal_time[(key, rev)]`` = the status.renewalTime last seen while at that revision.
    """

    api: client.ApiClient
    label_selector: str
    ready_at: dict[ObjKey, float] = field(default_factory=dict)
    revision_at: dict[tuple[ObjKey, int], float] = field(default_factory=dict)
    renewal_time: dict[tuple[ObjKey, int], str] = field(default_factory=dict)
    events: int = 0
    relists: int = 0
    reconnects: int = 0
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._custom = client.CustomObjectsApi(self.api)
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-watch")
        self._rv = ""

    def start(self) -> CertificateWatch:
        self._rv = self._relist(record=False)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def __enter__(self) -> CertificateWatch:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _relist(self, *, record: bool) -> str:
        """List (paged); with ``record``, take in what the watch missed (after a 410) as seen now."""
        cont: str | None = None
        while True:
            page = list_page(self._custom, self.label_selector, 500, cont)
            if record:
                for obj in page.get("items", []):
                    self._observe(obj)
            cont = page["metadata"].get("continue")
            if not cont:
                return str(page["metadata"]["resourceVersion"])

    def _observe(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        status = obj.get("status") or {}
        mono, wall = time.monotonic(), time.time()
        with self._cond:
            if key not in self.ready_at and ready_status(obj) == "True":
                self.ready_at[key] = mono
            rev = status.get("revision")
            if isinstance(rev, int):
                self.revision_at.setdefault((key, rev), wall)
                if status.get("renewalTime"):
                    self.renewal_time[(key, rev)] = str(status["renewalTime"])
            self._cond.notify_all()

    def _run(self) -> None:
        w = watch.Watch()  # type: ignore[no-untyped-call]
        while not self._stop.is_set():
            try:
                for event in w.stream(  # type: ignore[no-untyped-call]
                    self._custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    "certificates",
                    label_selector=self.label_selector,
                    resource_version=self._rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=5,  # server-side: the loop re-checks _stop at least this often
                    deserialize=False,
                ):
                    obj = event["object"]
                    rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.events += 1
                        self._observe(obj)
                    if rv:
                        self._rv = rv
                    if self._stop.is_set():
                        w.stop()  # type: ignore[no-untyped-call]
            except ApiException as e:
                if e.status == 410:  # too old: list again, count what we take in that way
                    self.relists += 1
                    self._rv = self._relist(record=True)
                    continue
                self.error = e
                return
            except Exception as e:  # a connection hiccup: resume from the last resourceVersion, a few times
                if self._stop.is_set():
                    return
                self.reconnects += 1
                if self.reconnects > 20:
                    self.error = e
                    return
                time.sleep(0.5)

    def wait_for(self, done: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done():
                if self.error is not None and not self._thread.is_alive():
                    raise BenchError(f"the certificate watch failed while waiting for {what}: {self.error}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
                self._cond.wait(timeout=min(left, 1.0))

    def count_ready(self) -> int:
        return len(self.ready_at)

    def count_revision(self, rev: int) -> int:
        return sum(1 for (_, r) in self.revision_at if r == rev)


class Kube(Certmint):
    """The tests' API wrapper, with what the benchmarks do to the API as a user's tooling would, from a pool of
    threads."""

    def __init__(self, kubeconfig: Path, concurrency: int) -> None:
        self.concurrency = concurrency
        self.api = api_client(kubeconfig, pool=concurrency + 8)
        super().__init__(self.api)
        self.watch_api = api_client(kubeconfig, pool=4)  # a watch holds its connection
        self.kubeconfig = kubeconfig

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]
        self.watch_api.close()  # type: ignore[no-untyped-call]

    def version(self) -> dict[str, Any]:
        info = client.VersionApi(self.api).get_code()
        return {"gitVersion": info.git_version, "platform": info.platform, "goVersion": info.go_version}

    def pool_map(self, fn: Callable[[T], Any], items: list[T]) -> list[float]:
        """Run ``fn`` on every item from the pool; returns each call's completion time (monotonic), in item order."""
        done = [0.0] * len(items)

        def one(i: int) -> None:
            fn(items[i])
            done[i] = time.monotonic()

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for f in [pool.submit(one, i) for i in range(len(items))]:
                f.result()  # re-raises the first failure
        return done

    def namespaces(self, names: list[str]) -> None:
        def create(name: str) -> None:
            try:
                self.core.create_namespace(
                    client.V1Namespace(
                        metadata=client.V1ObjectMeta(name=name, labels={"bench.certmint.dev/ns": "true"})
                    )
                )
            except ApiException as e:
                if e.status != 409:
                    raise

        self.pool_map(create, names)

    def list_certificates(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cont: str | None = None
        while True:
            page = list_page(self.custom, label_selector, 500, cont)
            items.extend(page.get("items", []))
            cont = page["metadata"].get("continue")
            if not cont:
                return items

    def delete_namespace_and_wait(self, name: str, timeout: float = 300.0) -> float:
        """Delete a namespace and wait until the namespace controller has removed it with everything in it."""
        started = time.monotonic()
        with contextlib.suppress(ApiException):
            self.core.delete_namespace(name)

        def gone() -> bool:
            try:
                self.core.read_namespace(name)
            except ApiException as e:
                if e.status == 404:
                    return True
                raise
            return False

        wait_until(lambda: gone() or None, f"namespace {name} to be deleted", timeout=timeout, interval=1.0)
        return round(time.monotonic() - started, 1)

    def delete_certificates(self, namespaces: list[str], label_selector: str) -> None:
        def delete(ns: str) -> None:
            self.custom.delete_collection_namespaced_custom_object(
                GROUP, VERSION, ns, "certificates", label_selector=label_selector
            )

        self.pool_map(delete, namespaces)

    def lease(self, namespace: str, name: str) -> dict[str, Any]:
        """A Lease's spec: holder, lease duration, transitions, and acquire/renew times as Unix seconds (or None)."""
        spec = client.CoordinationV1Api(self.api).read_namespaced_lease(name, namespace).spec
        if spec is None:
            raise BenchError(f"the Lease {namespace}/{name} has no spec")

        def unix(t: datetime.datetime | None) -> float | None:
            return t.timestamp() if t is not None else None

        return {
            "holder": spec.holder_identity,
            "lease_duration_s": spec.lease_duration_seconds,
            "transitions": spec.lease_transitions,
            "acquire_time": unix(spec.acquire_time),
            "renew_time": unix(spec.renew_time),
        }

    def noise_secret(self, namespace: str, name: str, size: int) -> None:
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(name=name),
            type="Opaque",
            data={"blob": base64.b64encode(os.urandom(size)).decode()},
        )
        self.core.create_namespaced_secret(namespace, body)

    def delete_secret(self, namespace: str, name: str) -> None:
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_secret(name, namespace)


def certificate_body(
    name: str,
    namespace: str,
    *,
    issuer: str,
    set_name: str,
    key: dict[str, Any],
    duration: str | None = None,
    renew_before: str | None = None,
) -> dict[str, Any]:
    """A benchmark's Certificate: a Service's DNS name, the key asked for, labelled with its set."""
    spec: dict[str, Any] = {"dnsNames": [f"{name}.{namespace}.svc"], "privateKey": key}
    if duration:
        spec["duration"] = duration
    if renew_before:
        spec["renewBefore"] = renew_before
    return certificate(name, namespace, issuer_name=issuer, labels={SET_LABEL: set_name}, **spec)
