"""``make run`` (``CLUSTER=local``, the default): the operator against a local control plane it starts.

Starts etcd + kube-apiserver + kube-controller-manager (see cluster.py), installs the CRDs, applies a
demo issuer chain and certificate (demo.yaml), runs the operator in the foreground and shows the demo
certificate going Ready. Ctrl-C (or SIGTERM) stops the operator and the control plane.

``make run CLUSTER=current`` (the operator against your kubeconfig's cluster) does not come here: it
is a Makefile recipe that uses nothing from tests/ (see docs/development.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.controlplane.cluster import ControlPlane, build_binaries, stop_recorded

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "certmint"


def kubectl(binary: str, kubeconfig: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [binary, f"--kubeconfig={kubeconfig}", *args]
    return subprocess.run(cmd, text=True, capture_output=True, check=check)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=REPO / ".local" / "cluster")
    args = parser.parse_args()
    # SIGTERM (e.g. from `timeout` or a parent shell) must clean up like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)

    workdir = args.dir.resolve()
    stop_recorded(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    print("building/finding the control-plane binaries (first run: ~10-15 min)...", flush=True)
    cp = ControlPlane(workdir=workdir, bin_dir=build_binaries())
    operator: subprocess.Popen[bytes] | None = None
    try:
        cp.start()
        kubeconfig = str(cp.admin_kubeconfig)
        binary = str(cp.bin_dir / "kubectl")
        kubectl(binary, kubeconfig, "apply", "--server-side", "-f", str(REPO / "crds"))
        kubectl(binary, kubeconfig, "wait", "--for=condition=Established", "-f", str(REPO / "crds"))
        kubectl(binary, kubeconfig, "create", "namespace", NAMESPACE, check=False)
        env = {**os.environ, "CERTMINT_NAMESPACE": NAMESPACE, "KUBECONFIG": kubeconfig}
        operator = subprocess.Popen([sys.executable, "-m", "certmint"], env=env)
        kubectl(binary, kubeconfig, "apply", "-f", str(REPO / "tests" / "controlplane" / "demo.yaml"))
        ready = ("--for=condition=Ready", "--timeout=60s", "certificate/web", "-n", "default")
        kubectl(binary, kubeconfig, "wait", *ready)
        shown = kubectl(binary, kubeconfig, "get", "clusterissuers,certificates", "-A")
        print("\n" + shown.stdout, flush=True)
        print(
            f"certmint is running against a local control plane. In another shell:\n"
            f"  export KUBECONFIG={kubeconfig}\n  {binary} get certificates -A\n"
            f"Ctrl-C stops the operator and the control plane.\n",
            flush=True,
        )
        return operator.wait()  # foreground until the operator exits or Ctrl-C
    except KeyboardInterrupt:
        return 0
    finally:
        if operator is not None and operator.poll() is None:
            operator.terminate()
            operator.wait(timeout=30)
        cp.stop()


if __name__ == "__main__":
    sys.exit(main())
