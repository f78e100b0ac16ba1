"""The kind provider of the e2e suite: a kind cluster that ``e2e/kind/run.sh`` created and loaded images into.

Selected with ``CERTMINT_E2E_PROVIDER=kind``. It does not create the cluster itself (run.sh
does: create, build + ``kind load docker-image``, run the suite, delete); it finds the cluster
by name, takes its kubeconfig from ``kind get kubeconfig`` (or ``CERTMINT_E2E_KUBECONFIG``)
and names the images run.sh loaded. kind clusters have CoreDNS, so the operator's pod needs
no host alias for ``kubernetes.default.svc``.

The only reason this provider skips is the one the issue names: kind is not installed. Every
other missing piece (no such cluster, kind failing) fails the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

DEFAULT_CLUSTER = "certmint-e2e"
DEFAULT_IMAGE = "certmint.local/certmint-operator:e2e"
DEFAULT_WORKLOAD_IMAGE = "python:3.11-slim-bookworm"  # python3 3.11 + OpenSSL, as the local workload image
SKIP_REASON = "kind provider selected but kind is not installed"


@dataclass
class KindProvider:
    """What the suite needs from a cluster (see ``ClusterProvider`` in e2e/test_mtls.py)."""

    kubeconfig: Path
    operator_image: tuple[str, str]  # repository, tag: loaded into every node by run.sh
    workload_image: str
    cluster: str
    name: str = "kind"
    cluster_dns: bool = True

    @classmethod
    def from_env(cls) -> KindProvider:
        kind = shutil.which("kind")
        if kind is None:
            pytest.skip(SKIP_REASON)
        cluster = os.environ.get("CERTMINT_E2E_KIND_CLUSTER", DEFAULT_CLUSTER)
        clusters = subprocess.run([kind, "get", "clusters"], capture_output=True, text=True, check=False)
        if cluster not in clusters.stdout.split():
            pytest.fail(
                f"kind cluster {cluster!r} not found (have: {clusters.stdout.split()}); "
                "e2e/kind/run.sh creates it, loads the images and runs the suite",
                pytrace=False,
            )
        if os.environ.get("CERTMINT_E2E_KUBECONFIG"):
            kubeconfig = Path(os.environ["CERTMINT_E2E_KUBECONFIG"])
        else:
            proc = subprocess.run(
                [kind, "get", "kubeconfig", "--name", cluster], capture_output=True, text=True, check=True
            )
            fd, path = tempfile.mkstemp(prefix="certmint-kind-", suffix=".kubeconfig")
            with os.fdopen(fd, "w") as f:
                f.write(proc.stdout)
            kubeconfig = Path(path)
        repository, _, tag = os.environ.get("CERTMINT_E2E_IMAGE", DEFAULT_IMAGE).rpartition(":")
        return cls(
            kubeconfig=kubeconfig,
            operator_image=(repository, tag),
            workload_image=os.environ.get("CERTMINT_E2E_WORKLOAD_IMAGE", DEFAULT_WORKLOAD_IMAGE),
            cluster=cluster,
        )

    def diagnostics(self) -> str:
        return f"kind cluster {self.cluster}: `kind export logs --name {self.cluster}` collects the node logs"
