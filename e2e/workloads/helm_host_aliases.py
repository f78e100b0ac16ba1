"""Helm post-renderer for clusters without cluster DNS (the local node): ``kubernetes.default.svc`` in /etc/hosts.

    helm install ... --post-renderer .venv/bin/python \\
        --post-renderer-args e2e/workloads/helm_host_aliases.py --post-renderer-args 10.0.0.1

In a pod, the operator logs in with kopf's service-account login, whose server is the name
``https://kubernetes.default.svc``. The local node has no CoreDNS, so that name would not
resolve; this adds ``hostAliases`` (the kubelet writes them into the pod's /etc/hosts) mapping
it to the ``kubernetes`` Service's ClusterIP to the chart's Deployment. Nothing else in the
rendered chart changes. On a cluster with DNS (kind) it is not used.
"""

from __future__ import annotations

import sys

import yaml


def main() -> None:
    ip = sys.argv[1]
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    for doc in docs:
        if doc.get("kind") == "Deployment":
            spec = doc["spec"]["template"]["spec"]
            spec.setdefault("hostAliases", []).append({"ip": ip, "hostnames": ["kubernetes.default.svc"]})
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
