"""A memory report on demand, for diagnosing the operator's RSS (off unless ``CERTMINT_MEMORY_DEBUG=1``).

With the switch on, ``kill -USR2 <pid>`` writes to stderr (the operator's log): the process's RSS split from
``/proc/self/status``, its threads, CPython's allocated blocks and gc counts, pymalloc's arena statistics
(``sys._debugmallocstats``) and, when tracemalloc runs (``PYTHONTRACEMALLOC=1``), the 25 lines that hold the
most memory. Nothing of it runs in normal operation.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import tracemalloc
from pathlib import Path
from types import FrameType

ENV = "CERTMINT_MEMORY_DEBUG"


def report() -> str:
    lines = ["memory report:"]
    status = Path("/proc/self/status").read_text().splitlines()
    lines += [s for s in status if s.startswith(("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"))]
    lines.append(f"python threads: {[t.name for t in threading.enumerate()]}")
    lines.append(f"allocated blocks: {sys.getallocatedblocks()}, gc counts: {gc.get_count()}")
    lines.append(f"gc objects: {len(gc.get_objects())}")
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot()
        current, peak = tracemalloc.get_traced_memory()
        lines.append(f"tracemalloc: current {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB")
        lines += [str(stat) for stat in snapshot.statistics("lineno")[:25]]
    return "\n".join(lines)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write(report() + "\n")
    sys.stderr.flush()
    sys._debugmallocstats()  # to the C stderr: pymalloc arenas, pools and free blocks per size class


def install(environ: dict[str, str] | None = None) -> bool:
    """Install the SIGUSR2 report when the switch is on; True if installed."""
    env = os.environ if environ is None else environ
    if env.get(ENV, "") not in ("1", "true", "yes"):
        return False
    signal.signal(signal.SIGUSR2, _on_signal)
    return True
