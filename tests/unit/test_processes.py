"""The key-generation workers end with the operator, even when it is killed (SIGKILL leaves no time to shut down).

Found in the takeover tests: an operator killed with SIGKILL left its worker process running, orphaned (PPID 1),
after the whole test run had ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

OPERATOR_LIKE = """
import os, sys
from certmint.controller.processes import worker_pool

pool = worker_pool(1)
print(pool.submit(os.getpid).result(), flush=True)  # the worker's pid, once it runs
sys.stdin.read()  # until killed
"""


def gone(pid: int) -> bool:
    """The process has exited (a zombie of a reaped-by-init orphan counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_ends_when_its_operator_is_killed() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen(
        [sys.executable, "-c", OPERATOR_LIKE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    worker = 0
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert worker != parent.pid and not gone(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not gone(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(worker), f"worker {worker} outlived its killed parent {parent.pid}"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if worker and not gone(worker):
            os.kill(worker, signal.SIGKILL)  # ours: started by the parent this test started


def test_a_worker_whose_parent_is_already_gone_exits_at_once() -> None:
    """The parent may die between the worker's start and its prctl: then getppid() is no longer the parent."""
    code = (
        "import os\nfrom certmint.controller.processes import die_with_parent\n"
        "die_with_parent(os.getppid() + 1_000_000)\nprint('still here')"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env, timeout=30
    )
    assert (done.returncode, done.stdout) == (1, "")
