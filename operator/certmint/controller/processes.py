"""The worker processes that generate keys: they end with the operator, however it ends.

A ``ProcessPoolExecutor`` worker waits on a pipe whose write end it holds itself, so it never sees its parent go.
When the operator exits normally the pool shuts it down; when the operator is killed (SIGKILL, an OOM kill) the
worker would stay, orphaned, holding its memory. In a pod the container's end takes it too; anywhere else (a test
tier that kills operators on purpose, a process supervisor) it would leak. On Linux each worker asks the kernel for
SIGKILL when its parent dies (``PR_SET_PDEATHSIG``); the parent's pid is checked once more afterwards, in case the
parent died before the request took effect.

This module imports nothing heavy: each spawned worker imports it first.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """A worker's initializer: SIGKILL this process when ``parent_pid`` (the operator) ends."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent is already gone: nothing will ever be asked of this worker
        os._exit(1)


def worker_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    """``workers`` processes, started by spawn (no copy of the operator's threads and sockets) on first use, that
    end with this process."""
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )
