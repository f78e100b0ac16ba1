"""The container image: built from the Dockerfile with Debian's Docker engine, then run as the chart runs it.

No registry can be pulled from here, so the base image is made locally
(tests/chart/base_image.sh: debootstrap + `docker import`) and the build runs
offline from a wheelhouse of the locked dependencies (PIP_OPTIONS). The Docker
daemon is our own: its own socket and data root, no bridge and no iptables
rules, started for the session and stopped by its PID afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from lock_requirements import LOCK, read_lock  # operator/: the image's dependency lock and its reader
from tests.chart.conftest import HERE, REPO, REPORT, install
from tests.conftest import missing_prerequisite
from tests.controlplane.cluster import ControlPlane, free_port
from tests.controlplane.dockerd import DockerError, OwnDockerd
from tests.controlplane.metrics import MetricSnapshot
from tests.controlplane.operator_process import http_get
from tests.integration.builders import Certmint, certificate, cluster_issuer
from tests.integration.kubeutil import wait_for

pytestmark = pytest.mark.chart
CACHE = Path(os.environ.get("CERTMINT_CACHE", Path.home() / ".cache" / "certmint"))
DOCKER_RUN = Path("/run/certmint-docker")
DOCKERD = OwnDockerd(DOCKER_RUN, Path("/var/lib/certmint-docker"))  # data root kept between runs: layer cache


def _dockerfile_arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert match, f"the Dockerfile has no default for ARG {name}"
    return match.group(1)


# The Dockerfile's pin, read from it, so that the offline wheelhouse has the version the build asks for.
SETUPTOOLS_VERSION = _dockerfile_arg("SETUPTOOLS_VERSION")
# The wheels of an offline build: the target's Python and glibc (bookworm: 2.36), whatever the host runs.
WHEEL_PLATFORM = ["--python-version", "3.11", "--implementation", "cp"] + [
    arg for glibc in (36, 34, 28, 17, 5) for arg in ("--platform", f"manylinux_2_{glibc}_x86_64")
]


def _timed(key: str, start: float) -> None:
    REPORT[key] = f"{time.monotonic() - start:.1f}s"


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    try:
        return DOCKERD.docker(*args, check=check, timeout=timeout)
    except DockerError as e:
        raise AssertionError(str(e)) from e


def _apt_install(*packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(cmd, capture_output=True, env=env, check=False).returncode == 0:
        return
    subprocess.run(["apt-get", "update"], capture_output=True, env=env, check=False)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        missing_prerequisite(f"apt-get install {' '.join(packages)} failed: {proc.stderr.strip()[-500:]}")


@pytest.fixture(scope="session")
def docker_daemon() -> Iterator[None]:
    """Debian's docker.io, installed if missing; our own dockerd, started if not already answering."""
    if os.geteuid() != 0:
        missing_prerequisite("the image test needs root (apt-get, debootstrap, dockerd)")
    start = time.monotonic()
    if not shutil.which("dockerd") or not shutil.which("debootstrap"):
        _apt_install("docker.io", "debootstrap")
        _timed("install docker.io + debootstrap", start)
    try:
        with DOCKERD.running():
            _timed("dockerd ready", start)
            yield
    except DockerError as e:
        missing_prerequisite(str(e))


@pytest.fixture(scope="session")
def base_image(docker_daemon: None) -> str:
    """The stand-in for python:3.11-slim: debootstrapped bookworm + python3, cached by the script's hash."""
    start = time.monotonic()
    proc = subprocess.run(["bash", str(HERE / "base_image.sh")], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        missing_prerequisite(f"making the base image failed (tests/chart/base_image.sh): {proc.stderr[-1000:]}")
    tarball = Path(proc.stdout.strip().splitlines()[-1])
    _timed("base image rootfs (debootstrap, cached by hash)", start)
    tag = f"certmint-base:{tarball.stem.rsplit('-', 1)[-1]}"
    if docker("image", "inspect", tag, check=False).returncode != 0:
        start = time.monotonic()
        docker("import", str(tarball), tag)
        _timed("docker import of the base image", start)
    return tag


def _wheelhouse() -> Path:
    """The locked wheels for the target platform, downloaded once per lock content."""
    key = hashlib.sha256(LOCK.read_bytes() + SETUPTOOLS_VERSION.encode()).hexdigest()[:12]
    out = CACHE / f"wheelhouse-{key}"
    if not out.is_dir():
        tmp = Path(tempfile.mkdtemp(dir=CACHE))
        cmd = [str(REPO / ".venv" / "bin" / "pip"), "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        cmd += [*WHEEL_PLATFORM, "-r", str(LOCK), f"setuptools=={SETUPTOOLS_VERSION}", "-d", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            missing_prerequisite(f"downloading the locked wheels failed: {proc.stderr[-1000:]}")
        tmp.rename(out)
    return out


def _build_context(dest: Path) -> None:
    """The work tree as a clone has it (tracked and unignored files; .dockerignore filters), plus the wheels."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    shutil.copytree(_wheelhouse(), dest / ".wheelhouse")


@pytest.fixture(scope="session")
def image(base_image: str) -> str:
    tag = "certmint-operator:chart-test"
    with tempfile.TemporaryDirectory() as context:
        _build_context(Path(context))
        start = time.monotonic()
        docker(
            "build",
            "--build-arg", f"BASE_IMAGE={base_image}",
            "--build-arg", "PIP_OPTIONS=--no-index --find-links=/src/deps",
            "--tag", tag,
            context,
        )  # fmt: skip
        _timed("docker build (offline, layer cache kept between runs)", start)
    size = int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout)
    REPORT["image size"] = f"{size / 1e6:.0f} MB (base {_size(base_image) / 1e6:.0f} MB)"
    return tag


def _size(tag: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout)


# -- the tests -------------------------------------------------------------------------------------------


def test_image_prints_its_version(image: str) -> None:
    assert docker("run", "--rm", image, "--version").stdout.strip() == "certmint 0.1.0"


def test_image_metadata(image: str) -> None:
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["certmint-operator"]
    assert "8080/tcp" in config["ExposedPorts"]


def test_image_runs_the_locked_dependencies_and_no_installer(image: str) -> None:
    script = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version for d in m.distributions()}))"
    )
    installed = json.loads(docker("run", "--rm", "--entrypoint", "python3", image, "-c", script).stdout)
    assert installed.pop("certmint") == "0.1.0"
    assert installed == read_lock(), "the image's packages differ from operator/requirements.lock"


def test_container_serves_health_and_issues_as_the_charts_identity(
    control_plane: ControlPlane, api: client.ApiClient, helm: Path, image: str
) -> None:
    """Run as the chart runs it (read-only root, no capabilities, UID 65532, the chart's ServiceAccount)."""
    installed = install(control_plane, api, helm, "image")
    env = installed.operator_env()
    port = free_port()
    env.update({"CERTMINT_HTTP_PORT": str(port), "POD_NAME": "image-0", "KUBECONFIG": "/etc/certmint/kubeconfig"})
    secrets = Path(tempfile.mkdtemp())
    shutil.copy(installed.kubeconfig, secrets / "kubeconfig")
    (secrets / "kubeconfig").chmod(0o644)  # readable by UID 65532, as a projected token is
    secrets.chmod(0o755)
    name = f"certmint-smoke-{os.getpid()}"
    start = time.monotonic()
    docker(
        "run", "--detach", "--name", name,
        "--network=host",  # the API server listens on the host's loopback
        "--read-only", "--tmpfs=/tmp", "--cap-drop=ALL", "--security-opt=no-new-privileges", "--user=65532:65532",
        "--volume", f"{secrets}:/etc/certmint:ro",
        *[arg for k, v in env.items() for arg in ("--env", f"{k}={v}")],
        image,
    )  # fmt: skip
    try:
        wait_for(lambda: http_get(port, "/readyz")[0] == 200, "the container's /readyz", 60)
        wait_for(lambda: http_get(port, "/healthz")[0] == 200, "the container's /healthz", 60)
        _timed("container start to healthy", start)
        # Healthy already while campaigning (a standby is alive); leading takes the Lease first.
        wait_for(
            lambda: MetricSnapshot.parse(http_get(port, "/metrics")[1]).value("certmint_leader") == 1,
            "the container to hold the Lease",
            60,
        )

        cm = Certmint(api)
        cm.create(cluster_issuer("image"))
        cm.create(certificate("smoke", "image", issuer_name="image"))  # smoke-tls, for smoke.image.svc
        wait_for(lambda: _secret_exists(api, "image", "smoke-tls"), "the Secret smoke-tls written by the container", 60)
        # SIGTERM, as the kubelet stops a pod: the operator stops cleanly.
        docker("stop", "--time", "30", name)
        assert docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    finally:
        logs = docker("logs", name, check=False)
        (control_plane.workdir / "logs" / "image-container.log").write_text(logs.stdout + logs.stderr)
        docker("rm", "--force", name, check=False)
        shutil.rmtree(secrets, ignore_errors=True)


def _secret_exists(api: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        return bool(client.CoreV1Api(api).read_namespaced_secret(name, namespace).data["tls.crt"])
    except client.ApiException:
        return False
