"""PodCertificateRequests through the real API, and waiting for their answers on a watch (the signal a kubelet
waits on), for tests/integration/test_pod_certificates.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.podcert import PCR_GROUP, PCR_PLURAL, PCR_VERSION, condition

CTB_PLURAL = "clustertrustbundles"


class PodRequests:
    """certificates.k8s.io/v1beta1 PodCertificateRequests and ClusterTrustBundles, as plain objects."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        ns = body["metadata"]["namespace"]
        return dict(self.custom.create_namespaced_custom_object(PCR_GROUP, PCR_VERSION, ns, PCR_PLURAL, body))

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(PCR_GROUP, PCR_VERSION, namespace, PCR_PLURAL, name))

    def trust_bundle(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.custom.get_cluster_custom_object(PCR_GROUP, PCR_VERSION, CTB_PLURAL, name))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list(self, namespace: str) -> tuple[list[dict[str, Any]], str]:
        listed = self.custom.list_namespaced_custom_object(PCR_GROUP, PCR_VERSION, namespace, PCR_PLURAL)
        return list(listed["items"]), str(listed["metadata"]["resourceVersion"])


class AnswerWatch:
    """Watch one namespace's PodCertificateRequests from a resourceVersion (taken before the test creates any) and
    note when each one's answer (Issued, Denied or Failed) is first seen, on ``time.monotonic()``'s clock.

    Runs in a thread; the watch is re-opened from the last resourceVersion seen when the server ends it."""

    def __init__(self, requests: PodRequests, namespace: str) -> None:
        self.requests = requests
        self.namespace = namespace
        self.answered: dict[str, tuple[float, dict[str, Any]]] = {}
        self.events = 0
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        items, self._rv = requests.list(namespace)
        for obj in items:
            self._see(obj)
        self._thread = threading.Thread(target=self._run, name=f"pcr-watch-{namespace}", daemon=True)

    def __enter__(self) -> AnswerWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _see(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if condition(obj) is not None and name not in self.answered:
            with self._cond:
                self.answered[name] = (time.monotonic(), obj)
                self._cond.notify_all()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                w = watch.Watch()
                for event in w.stream(
                    self.requests.custom.list_namespaced_custom_object,
                    PCR_GROUP,
                    PCR_VERSION,
                    self.namespace,
                    PCR_PLURAL,
                    resource_version=self._rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=30,
                ):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise AssertionError(f"the PodCertificateRequest watch failed: {obj}")
                    self._rv = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.events += 1
                        self._see(obj)
                    if self._stop.is_set():
                        w.stop()
                        break
        except BaseException as e:  # handed to the waiting test
            with self._cond:
                self.error = e
                self._cond.notify_all()

    def wait(self, names: Iterable[str], timeout: float) -> dict[str, dict[str, Any]]:
        """The answered objects of ``names``, once every one has an answer; AssertionError after ``timeout``."""
        wanted = set(names)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not wanted <= self.answered.keys():
                if self.error is not None:
                    raise AssertionError(f"the watch ended: {self.error!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(wanted - self.answered.keys())
                    raise AssertionError(
                        f"{len(missing)} of {len(wanted)} PodCertificateRequests unanswered after {timeout}s: "
                        f"{missing[:5]}"
                    )
                self._cond.wait(timeout=min(left, 1.0))
            return {n: self.answered[n][1] for n in wanted}
