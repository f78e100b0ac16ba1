"""Run the operator as a separate process, exactly as a user runs it (``python -m certmint``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.controlplane.cluster import free_port, wait_ready
from tests.controlplane.metrics import MetricSnapshot


class OperatorStartError(RuntimeError):
    """The operator exited or did not become ready; the message names its log."""


@dataclass
class OperatorProcess:
    kubeconfig: Path
    log_dir: Path
    namespace: str = "certmint"
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    runs: int = 0
    verbose: bool = True  # debug logs for tests; benchmarks run at INFO, as users do
    ready_poll_s: float = 0.1
    started_at: float = 0.0  # time.monotonic() just before the process was spawned
    python: str = sys.executable  # the interpreter (and so the installed packages) the operator runs with

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{self.runs}.log"

    def start(self, timeout: float = 60.0) -> None:
        self.runs += 1
        self.port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "CERTMINT_NAMESPACE": self.namespace,
            "CERTMINT_HTTP_PORT": str(self.port),
            **self.extra_env,
        }
        log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [self.python, "-m", "certmint", *(["--verbose"] if self.verbose else []), *self.extra_args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_ready(
            "operator",
            lambda: self.get("/readyz")[0] == 200,
            processes={"operator": self.proc},
            log_path=lambda _: self.log_path,
            timeout=timeout,
            error=OperatorStartError,
            interval=self.ready_poll_s,
        )

    def get(self, path: str) -> tuple[int, str]:
        return http_get(self.port, path)

    def metrics(self) -> MetricSnapshot:
        """The operator's ``/metrics`` now, parsed (an AssertionError if it does not answer 200)."""
        status, text = self.get("/metrics")
        assert status == 200, f"the operator's /metrics answered {status}; log: {self.log_path}"
        return MetricSnapshot.parse(text)

    def stop(self) -> None:
        """Graceful stop (SIGTERM), as Kubernetes does on a rollout."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash at an arbitrary point."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def http_get(port: int, path: str) -> tuple[int, str]:
    """GET the operator's HTTP endpoint on loopback: (status, body), or (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""
