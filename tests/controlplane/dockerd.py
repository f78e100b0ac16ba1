"""Our own Docker daemon (Debian's docker.io) for building and smoke-running images in tests.

It gets its own socket, exec root and data root (the layer cache is kept between runs), no bridge,
no NAT and no firewall changes (builds run offline; containers use the host network), and it is
stopped by its PID. A daemon already answering on the same socket (left running on purpose) is used
and left alone.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.controlplane.cluster import wait_ready


class DockerError(RuntimeError):
    """A docker command or the daemon failed; the message carries its output or log path."""


def docker_cli() -> str | None:
    # Debian's client matches Debian's daemon; another `docker` on PATH may be a newer client only.
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker")


@dataclass(frozen=True)
class OwnDockerd:
    run_dir: Path
    data_dir: Path

    @property
    def host(self) -> str:
        return f"unix://{self.run_dir}/docker.sock"

    def docker(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [docker_cli() or "docker", "--host", self.host, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise DockerError(
                f"docker {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr}"
            )
        return proc

    def answering(self) -> bool:
        try:
            return self.docker("version", check=False, timeout=30).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    @contextmanager
    def running(self, timeout: float = 60) -> Iterator[None]:
        if self.answering():
            yield
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.run_dir / "dockerd.log"
        with log_path.open("ab") as log:
            daemon = subprocess.Popen(
                [
                    "dockerd",
                    f"--host={self.host}",
                    f"--data-root={self.data_dir}",
                    f"--exec-root={self.run_dir / 'exec'}",
                    f"--pidfile={self.run_dir / 'dockerd.pid'}",
                    "--bridge=none",
                    "--iptables=false",
                    "--ip-masq=false",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_ready(
                "dockerd",
                self.answering,
                processes={"dockerd": daemon},
                log_path=lambda _: log_path,
                timeout=timeout,
                error=DockerError,
                interval=0.2,
            )
            yield
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()
