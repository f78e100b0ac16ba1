"""Every value set, rendered and applied server-side to a real kube-apiserver: every object must be accepted.

Applied for real (not dry-run), with strict field validation, CRDs first as Helm orders an
install. The ServiceMonitor kind comes from a stand-in CRD (stand_in_crds/), so it is
applied for real too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chart.conftest import HERE, apply_server_side, documents, ensure_namespaces, kubectl, render
from tests.chart.value_sets import NAMES, value_sets
from tests.controlplane.cluster import ControlPlane

pytestmark = pytest.mark.chart


@pytest.fixture(scope="module")
def servicemonitor_crd(control_plane: ControlPlane) -> None:
    path = HERE / "stand_in_crds" / "monitoring.coreos.com_servicemonitors.yaml"
    kubectl(control_plane, "apply", "--server-side", "-f", str(path))
    kubectl(control_plane, "wait", "--for=condition=Established", "--timeout=60s", "-f", str(path))


def _resource_versions(cp: ControlPlane, names: list[str], namespace: str) -> dict[str, str]:
    out = kubectl(cp, "get", "-n", namespace, "-o", "json", *names).stdout
    items = json.loads(out).get("items") or [json.loads(out)]
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}


@pytest.mark.parametrize("name", NAMES)
def test_value_set_applies_server_side(
    control_plane: ControlPlane, helm: Path, servicemonitor_crd: None, name: str
) -> None:
    release = f"apply-{name}"
    values = value_sets(release)[name]
    docs = documents(render(helm, release, release, values))
    ensure_namespaces(control_plane, [release, *values.get("watchNamespaces", [])])

    applied = apply_server_side(control_plane, docs)
    assert len(applied) == len(docs), f"applied {applied}, rendered {len(docs)} objects"

    # Stored as rendered: read back every object from the API server.
    namespaced = [n for n, d in zip(applied, docs, strict=True) if d["metadata"].get("namespace") == release]
    versions = _resource_versions(control_plane, namespaced, release)
    assert len(versions) == len(namespaced)

    # A GitOps tool re-applies the same render on every sync: that must change nothing.
    apply_server_side(control_plane, docs)
    assert _resource_versions(control_plane, namespaced, release) == versions


def test_every_value_set_was_different(helm: Path) -> None:
    """Guards the parametrization: a value set that renders like another tests nothing new."""
    renders = {name: render(helm, "same", "same", value_sets("same")[name]) for name in NAMES}
    assert len(set(renders.values())) == len(renders)
