"""The e2e suite's cluster: kind, created by ``e2e/kind/run.sh`` (the one script users run too).

Two ways in:

- ``bash e2e/kind/run.sh`` creates the cluster, loads the images and runs ``pytest e2e`` with
  ``CERTMINT_E2E_KUBECONFIG`` set: the suite uses that cluster as it is (:meth:`KindProvider.from_env`).
- ``pytest e2e`` alone (``make test``, ``.ci/run``): the session fixture ``kind_cluster`` of e2e/conftest.py
  runs ``run.sh up`` itself, uses the cluster for every module and runs ``run.sh down`` at the end
  (:func:`create`, :func:`delete`). ``CERTMINT_KIND_NODE_IMAGE=local`` (what the Makefile sets) builds kind,
  the node image and both workload images here from local parts; without it run.sh takes kind from PATH,
  kind's own node image and pulled images.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUN_SH = REPO / "e2e" / "kind" / "run.sh"
DEFAULT_CLUSTER = "certmint-e2e"
IMAGE = "certmint.local/certmint-operator:e2e"  # what run.sh builds (or e2e/operator_image.py) and loads
UPSTREAM_WORKLOAD_IMAGE = "python:3.11-slim-bookworm"  # python3 3.11 + OpenSSL, pulled by run.sh
LOCAL_WORKLOAD_IMAGE = "certmint.local/e2e-workload:bookworm"  # e2e/images/build.sh, loaded by run.sh


class KindError(RuntimeError):
    pass


@dataclass
class KindProvider:
    """What the suite needs from a cluster (see ``ClusterProvider`` in e2e/test_mtls.py)."""

    kubeconfig: Path
    operator_image: tuple[str, str]  # repository, tag: loaded into every node by run.sh
    workload_image: str
    cluster: str
    local: bool
    name: str = "kind"

    @classmethod
    def from_env(cls) -> KindProvider:
        """The cluster ``run.sh`` made before it started pytest (``CERTMINT_E2E_KUBECONFIG``)."""
        repository, _, tag = os.environ.get("CERTMINT_E2E_IMAGE", IMAGE).rpartition(":")
        local = local_mode()
        return cls(
            kubeconfig=Path(os.environ["CERTMINT_E2E_KUBECONFIG"]),
            operator_image=(repository, tag),
            workload_image=os.environ.get("CERTMINT_E2E_WORKLOAD_IMAGE", default_workload_image(local)),
            cluster=os.environ.get("CERTMINT_E2E_KIND_CLUSTER", DEFAULT_CLUSTER),
            local=local,
        )

    def diagnostics(self) -> str:
        env = (
            "CERTMINT_KIND_NODE_IMAGE=local DOCKER_HOST=unix:///run/certmint-kind-docker/docker.sock "
            if self.local
            else ""
        )
        return (
            f"kind cluster {self.cluster}: `{env}kind export logs --name {self.cluster} DIR` collects the node logs "
            "(KEEP_CLUSTER=1 keeps the cluster after the run)"
        )


def local_mode() -> bool:
    return os.environ.get("CERTMINT_KIND_NODE_IMAGE", "") == "local"


def default_workload_image(local: bool) -> str:
    return LOCAL_WORKLOAD_IMAGE if local else UPSTREAM_WORKLOAD_IMAGE


def missing_prerequisites() -> list[str]:
    """Why ``run.sh up`` cannot work on this machine (empty: it can try)."""
    reasons = []
    if local_mode():
        if os.geteuid() != 0:
            reasons.append("CERTMINT_KIND_NODE_IMAGE=local needs root (its own dockerd, debootstrap)")
        for tool, package in (("dockerd", "docker.io"), ("debootstrap", "debootstrap"), ("go", "Go")):
            if shutil.which(tool) is None:
                reasons.append(f"{tool} not found (install {package}; `make e2e-setup` installs the Debian ones)")
    else:
        for tool in ("docker", "kind"):
            if shutil.which(tool) is None:
                reasons.append(
                    f"{tool} not found on PATH (install it, or set CERTMINT_KIND_NODE_IMAGE=local to build "
                    "kind and its node image here)"
                )
    return reasons


def _env(cluster: str, kubeconfig: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "CERTMINT_E2E_KIND_CLUSTER": cluster, "CERTMINT_VENV": sys.prefix}
    if kubeconfig is not None:
        env["CERTMINT_KIND_KUBECONFIG"] = str(kubeconfig)
    return env


def create(cluster: str, workdir: Path, log: Path) -> tuple[KindProvider, float]:
    """``run.sh up``: cluster created, both images loaded; returns the provider and the seconds it took.

    run.sh's output goes to ``log`` (its last lines are in the error when it fails)."""
    kubeconfig = workdir / "kubeconfig"
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(
            ["bash", str(RUN_SH), "up"],
            cwd=REPO,
            env=_env(cluster, kubeconfig),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.monotonic() - start
    if proc.returncode != 0 or not kubeconfig.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise KindError(
            f"`bash e2e/kind/run.sh up` exited {proc.returncode} after {seconds:.0f} s; its last lines:\n{tail}"
        )
    local = local_mode()
    repository, _, tag = IMAGE.rpartition(":")
    provider = KindProvider(
        kubeconfig=kubeconfig,
        operator_image=(repository, tag),
        workload_image=os.environ.get("CERTMINT_E2E_WORKLOAD_IMAGE", default_workload_image(local)),
        cluster=cluster,
        local=local,
    )
    return provider, seconds


def delete(cluster: str, log: Path) -> int:
    """``run.sh down``: the cluster deleted (and, in local mode, the dockerd ``up`` started stopped)."""
    with log.open("a") as out:
        return subprocess.run(
            ["bash", str(RUN_SH), "down"],
            cwd=REPO,
            env=_env(cluster),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode


def export_logs(cluster: str, target: Path, log: Path) -> None:
    """The node's logs (kubelet, containerd, pods) into ``target``, through run.sh's environment."""
    env = _env(cluster)
    env["CERTMINT_E2E_KIND_LOGS"] = str(target)
    with log.open("a") as out:
        subprocess.run(
            ["bash", str(RUN_SH), "logs"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
