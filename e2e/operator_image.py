"""The operator image for the e2e kind cluster: built from the Dockerfile with Docker, saved for ``kind load``.

No registry can be pulled from on this project's machines, so this follows the chart tier
(``tests/chart/test_image.py``): the base image is the debootstrapped bookworm + python3 of
``tests/chart/base_image.sh`` (``docker import``), and the build is offline from the locked
wheels (``PIP_OPTIONS=--no-index --find-links=/src/deps``). The build context comes from the
chart tier's plain helper ``_build_context`` (work tree as a clone has it + the wheelhouse);
its fixtures (daemon, base image, build) are pytest fixtures, so their few steps are repeated
here rather than called.

The Docker daemon is our own, never the chart tier's or anyone else's: socket
``/run/certmint-e2e-docker/docker.sock``, data root ``/var/lib/certmint-e2e-docker`` (the
layer cache, kept between runs), no bridge, no iptables rules, no masquerading. It is started
for the build and stopped by its PID afterwards (left alone if it was already answering).

The result is a ``docker save`` archive, cached by image ID under
``${CERTMINT_CACHE:-~/.cache/certmint}/e2e-operator/``, which ``e2e/kind/run.sh`` loads into the
kind node with ``kind load image-archive``; pods use it with ``imagePullPolicy: Never``.

Command line::

    python -m e2e.operator_image      # build (or reuse), print the archive path (e2e/kind/run.sh loads it)
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.chart.test_image import _build_context  # the work tree as a clone has it + the offline wheelhouse
from tests.controlplane.dockerd import DockerError, OwnDockerd, docker_cli

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("CERTMINT_CACHE", Path.home() / ".cache" / "certmint"))
REPOSITORY = "certmint.local/certmint-operator"
TAG = "e2e"
IMAGE = f"{REPOSITORY}:{TAG}"
DOCKER_RUN = Path("/run/certmint-e2e-docker")
DOCKER_DATA = Path("/var/lib/certmint-e2e-docker")
DOCKERD = OwnDockerd(DOCKER_RUN, DOCKER_DATA)


class ImageError(RuntimeError):
    """The operator image could not be built; the message says which step and where its log is."""


def missing_prerequisites() -> list[str]:
    """What this machine lacks to build the image, as reasons (empty: all there)."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("building the operator image needs root (dockerd, debootstrap)")
    for tool in ("dockerd", "debootstrap"):
        if shutil.which(tool) is None:
            reasons.append(f"{tool} not found (apt-get install docker.io debootstrap)")
    if not docker_cli():
        reasons.append("no docker client (apt-get install docker.io)")
    return reasons


def docker(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    try:
        return DOCKERD.docker(*args, check=check, timeout=timeout)
    except DockerError as e:
        raise ImageError(str(e)) from e


@contextmanager
def dockerd() -> Iterator[None]:
    """Our own dockerd for the duration of the block (see tests/controlplane/dockerd.py)."""
    try:
        with DOCKERD.running():
            yield
    except DockerError as e:
        raise ImageError(str(e)) from e


def base_image() -> str:
    """The stand-in for python:3.11-slim (tests/chart/base_image.sh, cached by hash), imported into our daemon."""
    proc = subprocess.run(
        ["bash", str(REPO / "tests" / "chart" / "base_image.sh")], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ImageError(f"making the base image failed (tests/chart/base_image.sh): {proc.stderr[-1500:]}")
    tarball = Path(proc.stdout.strip().splitlines()[-1])
    tag = f"certmint-base:{tarball.stem.rsplit('-', 1)[-1]}"
    if docker("image", "inspect", tag, check=False).returncode != 0:
        docker("import", str(tarball), tag)
    return tag


def build(timings: dict[str, float] | None = None) -> Path:
    """Build (or reuse) the operator image; returns its ``docker save`` archive."""
    timings = {} if timings is None else timings
    reasons = missing_prerequisites()
    if reasons:
        raise ImageError("; ".join(reasons))
    t0 = time.monotonic()
    DOCKER_RUN.mkdir(parents=True, exist_ok=True)
    # One build at a time on this daemon: a second run would otherwise use the first one's dockerd
    # and lose it when the first stops it.
    with (DOCKER_RUN / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, after dockerd stopped
        out = _build_locked(timings, t0)
    timings["total_s"] = round(time.monotonic() - t0, 1)
    return out


def _build_locked(timings: dict[str, float], t0: float) -> Path:
    with dockerd():
        timings["dockerd_ready_s"] = round(time.monotonic() - t0, 1)
        t = time.monotonic()
        base = base_image()
        timings["base_image_s"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="certmint-e2e-context-") as context:
            _build_context(Path(context))
            docker(
                "build",
                "--build-arg", f"BASE_IMAGE={base}",
                "--build-arg", "PIP_OPTIONS=--no-index --find-links=/src/deps",
                "--tag", IMAGE,
                context,
            )  # fmt: skip
        timings["docker_build_s"] = round(time.monotonic() - t, 1)
        image_id = docker("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip().split(":")[-1]
        out = CACHE / "e2e-operator" / f"{image_id[:16]}.tar"
        if not out.exists():
            t = time.monotonic()
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".tmp")
            docker("save", "--output", str(tmp), IMAGE)
            tmp.rename(out)
            for old in out.parent.glob("*.tar"):  # one archive per source state; keep only the newest
                if old != out:
                    old.unlink()
            timings["docker_save_s"] = round(time.monotonic() - t, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    timings: dict[str, float] = {}
    archive = build(timings)
    print(f"operator image {IMAGE}: {archive} {timings}", file=sys.stderr)
    print(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
