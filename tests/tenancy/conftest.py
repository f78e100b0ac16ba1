"""Tenancy tier: a tenant attacks certmint through the real API server, as the chart deploys it.

The world every attack runs in, built once per session:

- a control plane of the tier's own, with the controller manager (garbage collection must be real: a
  Secret owner-referenced by mistake would really be deleted with its Certificate, and the token
  controller fills ServiceAccount token Secrets);
- the chart applied by an administrator (release ``certmint`` in namespace ``certmint``) and the
  operator running as the chart's ServiceAccount with the Deployment's environment
  (tests/chart/test_rbac.py's ``run_operator``);
- an administrator's CA in the Secret ``mesh-root-ca`` of the operator namespace and the ClusterIssuer
  ``mesh-ca`` with the documented example policy (``EXAMPLE_POLICY``), plus ``team-b-only``, the same CA
  for namespace team-b alone;
- the attacker ``alice`` (a restricted identity of the control plane's token file) with a Role in
  team-a that allows Certificates and CertificateRequests and nothing else: no Secrets, no Issuers;
  ``bob``, a namespace editor of certmint's kinds in team-a (the chart's aggregated ``certmint-edit``
  ClusterRole, bound in team-a only), for the attacks that need an Issuer;
- the victim namespace team-b with a Certificate ``web`` issued for ``web.team-b.svc``.

Each attack's outcome is recorded, and the terminal summary prints one line per attack
(``tenancy: attack=<id> refused by=<layer> reason=...``) and the count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.chart.conftest import Installed, ensure_namespaces, helm, install
from tests.chart.test_rbac import make_ca_secret, run_operator
from tests.conftest import session_control_plane
from tests.controlplane.cluster import ControlPlane
from tests.controlplane.operator_process import OperatorProcess
from tests.integration.builders import ISOLATION_POLICY, Certmint, certificate, cluster_issuer

__all__ = ["helm"]  # the chart tier's fixture: helm v3 from PyPI, a missing prerequisite handled as there

RELEASE = "certmint"  # also the operator's namespace, where ClusterIssuer CA Secrets live
ATTACKER_NS, VICTIM_NS = "team-a", "team-b"
CA_SECRET, CA_ISSUER, TEAM_B_ONLY = "mesh-root-ca", "mesh-ca", "team-b-only"
ATTACKER, EDITOR = "alice", "bob"

#: The documented example policy of a ClusterIssuer shared by namespaces.
EXAMPLE_POLICY = ISOLATION_POLICY

#: Outcome lines of the session's attacks, printed at the end (see pytest_terminal_summary).
OUTCOMES: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not OUTCOMES:
        return
    terminalreporter.write_sep("-", "tenancy tier: attacks")
    for line in OUTCOMES:
        terminalreporter.write_line(line)
    refused = sum(1 for line in OUTCOMES if " refused " in line)
    terminalreporter.write_line(f"tenancy: {refused} of {len(OUTCOMES)} attacks refused")


@dataclass
class World:
    """Everything an attack needs: clients of the administrator, the attacker and the editor, and the operator."""

    cp: ControlPlane
    admin: Certmint
    alice: Certmint
    bob: Certmint
    installed: Installed
    operator: OperatorProcess
    alice_api: client.ApiClient = field(repr=False)


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    with session_control_plane(request, "tenancy", with_controller_manager=True) as cp:
        yield cp


@pytest.fixture(scope="session")
def world(control_plane: ControlPlane, helm: Path) -> Iterator[World]:
    cp = control_plane
    api = config.new_client_from_config(config_file=str(cp.admin_kubeconfig))
    installed = install(cp, api, helm, RELEASE)
    ensure_namespaces(cp, [ATTACKER_NS, VICTIM_NS])
    _grant_tenants(api)
    make_ca_secret(api, RELEASE, CA_SECRET)
    admin = Certmint(api)
    admin.create(cluster_issuer(CA_ISSUER, ca_secret=CA_SECRET, policy=EXAMPLE_POLICY))
    admin.create(
        cluster_issuer(TEAM_B_ONLY, ca_secret=CA_SECRET, policy={**EXAMPLE_POLICY, "allowedNamespaces": [VICTIM_NS]})
    )
    proc = run_operator(cp, installed)
    try:
        admin.wait_ready("ClusterIssuer", CA_ISSUER, timeout=60)
        admin.wait_ready("ClusterIssuer", TEAM_B_ONLY, timeout=60)
        # The victim: team-b's own Service identity, issued as it should be.
        admin.create(certificate("web", VICTIM_NS, issuer_name=CA_ISSUER, dnsNames=["web.team-b.svc"], duration="1h"))
        admin.wait_ready("Certificate", "web", VICTIM_NS, timeout=60)
        alice_api = config.new_client_from_config(config_file=str(cp.kubeconfig_for(ATTACKER)))
        bob_api = config.new_client_from_config(config_file=str(cp.kubeconfig_for(EDITOR)))
        yield World(cp, admin, Certmint(alice_api), Certmint(bob_api), installed, proc, alice_api)
    finally:
        proc.stop()


def _grant_tenants(api: client.ApiClient) -> None:
    """alice: Certificates and CertificateRequests in team-a only. bob: the chart's certmint-edit/-view in team-a."""
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(
        ATTACKER_NS,
        {
            "metadata": {"name": "certificates-only"},
            "rules": [
                {
                    "apiGroups": ["certmint.dev"],
                    "resources": ["certificates", "certificaterequests"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
                }
            ],
        },
    )
    bindings = [
        ("alice-certificates", "Role", "certificates-only", ATTACKER),
        ("bob-certmint-edit", "ClusterRole", f"{RELEASE}-edit", EDITOR),
        ("bob-certmint-view", "ClusterRole", f"{RELEASE}-view", EDITOR),
    ]
    for name, kind, role, user in bindings:
        rbac.create_namespaced_role_binding(
            ATTACKER_NS,
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            },
        )
