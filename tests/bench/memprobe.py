"""Where the operator's memory goes: ``python -m tests.bench.memprobe [--certificates N] [--variant NAME=K=V,...]``.

A diagnostic, not a benchmark: it starts the benchmark's control plane and operator (tests/bench/run.py's setup),
samples the idle operator with no Certificates, creates N Ready Certificates the way the memory scenario tops up
(long-lived ECDSA, set ``fill``), samples again once the burst's memory is released, then restarts the operator on
the same N Certificates once per variant (extra environment, e.g. ``arena2=MALLOC_ARENA_MAX=2``) and samples each.
A sample is /proc/<pid>/status (VmRSS, RssAnon, RssFile), /proc/<pid>/smaps_rollup, the thread count, and, with
``CERTMINT_MEMORY_DEBUG=1`` in the operator's environment (always set here), the operator's own report on SIGUSR2
(see certmint.memdebug) in its log. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench.harness import BenchControlPlane, BenchOperator, Kube, runtime_python
from tests.bench.run import REPO, ca_chain, install_crds, log, machine_facts
from tests.bench.scenarios import OPERATOR_NAMESPACE, SCALES, Context, ensure_certificates
from tests.controlplane.cluster import build_binaries

STATUS_KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads")


def sample(pid: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in STATUS_KEYS:
            out[key] = int(value.split()[0])
    rollup: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        rollup[key] = int(value.split()[0])
    out["smaps_rollup_kB"] = rollup
    return out


def settle(op: BenchOperator, certificates: int, settle_s: float) -> dict[str, Any]:
    before = op.metrics()
    idle = op.wait_idle(certificates, timeout=300 + certificates * 0.05)
    try:
        op.wait_memory_released(before, timeout=60)
        released = True
    except Exception:  # a restart with nothing to do may not count as a burst
        released = False
    time.sleep(settle_s)
    s = sample(op.pid)
    s["idle_after_s"] = round(idle.at - op.started_at, 1)
    s["released"] = released
    os.kill(op.pid, signal.SIGUSR2)  # the operator's own report, into its log
    time.sleep(1.0)
    return s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--certificates", type=int, default=10_000)
    parser.add_argument("--variant", action="append", default=[], help="NAME=K=V[,K=V...]; NAME=- for defaults")
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    variants: list[tuple[str, dict[str, str]]] = []
    for spec in args.variant:
        name, _, rest = spec.partition("=")
        env = dict(kv.split("=", 1) for kv in rest.split(",") if kv and kv != "-")
        variants.append((name, env))

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = REPO / ".local" / f"memprobe-{stamp}"
    cp = BenchControlPlane(workdir=workdir, bin_dir=Path(os.environ.get("CERTMINT_KUBE_BIN_DIR") or build_binaries()))
    results: dict[str, Any] = {"machine": machine_facts(), "certificates": args.certificates, "samples": {}}
    base_env = {"PYTHONPATH": str(REPO / "operator"), "CERTMINT_MEMORY_DEBUG": "1"}
    operator: BenchOperator | None = None
    kube: Kube | None = None
    try:
        cp.start()
        install_crds(cp)
        kube = Kube(cp.admin_kubeconfig, 16)
        operator = BenchOperator(
            kubeconfig=cp.admin_kubeconfig,
            log_dir=workdir / "logs",
            namespace=OPERATOR_NAMESPACE,
            extra_env=dict(base_env),
            python=runtime_python(REPO),
        )
        operator.start()
        ca_chain(kube)
        results["samples"]["idle_0"] = settle(operator, 1, args.settle)
        log(f"idle with no Certificates: {results['samples']['idle_0']['VmRSS'] / 1024:.1f} MiB")
        ctx = Context(cp=cp, kube=kube, operator=operator, scale=SCALES["full"], log=log)
        results["top_up"] = ensure_certificates(ctx, args.certificates)
        results["samples"]["after_burst"] = settle(operator, args.certificates, args.settle)
        log(f"after the burst: {results['samples']['after_burst']['VmRSS'] / 1024:.1f} MiB")
        for name, env in variants:
            operator.stop()
            operator.extra_env = {**base_env, **env}
            operator.start()
            results["samples"][f"restart_{name}"] = s = settle(operator, args.certificates, args.settle)
            s["env"] = env
            s["log"] = str(operator.log_path)
            log(f"restart {name} {env}: {s['VmRSS'] / 1024:.1f} MiB, idle after {s['idle_after_s']} s")
    finally:
        if operator is not None:
            operator.stop()
        if kube is not None:
            kube.close()
        cp.stop()
        shutil.rmtree(workdir / "etcd-data", ignore_errors=True)  # 10,000 Certificates' worth; the logs stay
    results["workdir"] = str(workdir)
    text = json.dumps(results, indent=2, default=str)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
