"""The operator, assembled: which reconciler handles each kind of work-queue key."""

from __future__ import annotations

import time
from collections.abc import Callable

from certmint.controller.bundles import reconcile_bundle
from certmint.controller.certificates import prune_requests, reconcile_certificate
from certmint.controller.issuers import reconcile_issuer
from certmint.controller.pod_requests import reconcile_pod_request
from certmint.controller.requests import reconcile_request
from certmint.controller.runtime import Operator, Reconcilers
from certmint.kube.client import KubeClient
from certmint.settings import Settings

RECONCILERS = Reconcilers(
    certificate=reconcile_certificate,
    prune_requests=prune_requests,
    issuer=reconcile_issuer,
    request=reconcile_request,
    bundle=reconcile_bundle,
    pod_request=reconcile_pod_request,
)


def build_operator(settings: Settings, api: KubeClient, *, clock: Callable[[], float] = time.time) -> Operator:
    """An operator ready to start: kopf's handlers (or a test) feed it events and call ``lead()``."""
    return Operator(settings, api, RECONCILERS, clock=clock)
