"""The value sets every chart test renders: the configurations users are expected to run.

Cluster-scoped names (ClusterIssuers, ClusterRoles) derive from the release name, so the
sets can be applied side by side to one API server.
"""

from __future__ import annotations

from typing import Any


def value_sets(release: str) -> dict[str, dict[str, Any]]:
    return {
        "defaults": {},
        "ha": {"replicaCount": 2, "podDisruptionBudget": {"enabled": True}},
        "namespaced": {"watchNamespaces": [f"{release}-team-a", f"{release}-team-b"]},
        "metrics-off": {"metrics": {"service": {"enabled": False}}},
        "servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}}},
        "networkpolicy": {
            "networkPolicy": {
                "enabled": True,
                "apiServerCIDRs": ["10.0.0.1/32"],
                "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            }
        },
        "selfsigned-issuer": {"clusterIssuer": {"create": True, "name": f"{release}-selfsigned"}},
        "ca-issuer": {
            "clusterIssuer": {
                "create": True,
                "name": f"{release}-ca",
                "selfSigned": False,
                "ca": {"secretName": "root-ca"},
                "policy": {"allowedDNSNames": ["*.svc"], "maxDuration": "720h"},
            }
        },
        "pod-certificates": {"podCertificates": {"enabled": True}},
        "bring-your-own": {
            "crds": {"enabled": False},
            "rbac": {"create": False},
            "serviceAccount": {"create": False, "name": "certmint-operator"},
            "leaderElection": {"enabled": False},
            "operator": {"verbose": True, "postEvents": False},
            "image": {"digest": "sha256:" + "0" * 64},
        },
    }


NAMES = list(value_sets("x"))
