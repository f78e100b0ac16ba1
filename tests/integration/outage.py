"""Take the API server away and bring it back, as a crash or a restart of kube-apiserver would.

The control plane keeps no restart method of its own; this helper restarts its kube-apiserver with
the command line the running process was started with (read from /proc), on the same port, with
the same etcd (so every object survives), and waits on /readyz as the fixture does at start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from tests.controlplane.cluster import ControlPlane, _http_get

API_SERVER = "kube-apiserver"


def _argv(pid: int) -> list[str]:
    return [part.decode() for part in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if part]


@contextlib.contextmanager
def api_server_down(cp: ControlPlane, sig: int = signal.SIGKILL) -> Iterator[float]:
    """Stop kube-apiserver with ``sig`` on entry (yields the time.monotonic() of the stop), start it again on exit.

    SIGKILL is a crash: connections are reset, nothing is drained. SIGTERM is a graceful shutdown:
    the server answers with errors while it drains, then goes away.
    """
    proc = cp.processes[API_SERVER]
    argv = _argv(proc.pid)
    os.kill(proc.pid, sig)
    proc.wait(timeout=90)
    stopped = time.monotonic()
    try:
        yield stopped
    finally:
        cp._spawn(API_SERVER, argv)
        _keep_stop_order(cp.workdir / "pids", API_SERVER, old_pid=proc.pid, new_pid=cp.processes[API_SERVER].pid)
        cp._wait(API_SERVER, lambda: _http_get(f"{cp.server}/readyz", cp.ca_pem, cp.tokens["admin"]) == b"ok")


def _keep_stop_order(pids_file: Path, name: str, *, old_pid: int, new_pid: int) -> None:
    """The new PID takes the old one's place in the record the control plane is stopped by (newest first).

    Appended last, the API server would be stopped before the controller manager, and wait on its
    connections for a minute instead of exiting at once.
    """
    old, new = f"{name} {old_pid}", f"{name} {new_pid}"
    lines = [new if line == old else line for line in pids_file.read_text().splitlines() if line != new]
    pids_file.write_text("\n".join(lines) + "\n")
