"""Bundle reconciler: gather the sources' anchors, plan each namespace's target (core.bundle), write, report.

A Bundle's targets are a ConfigMap (and optionally a Secret) named after the Bundle in every namespace its
selector matches, and, where the API server serves them, a ClusterTrustBundle of the same name. Each is created
with an owner reference to the Bundle: it is ours to update, and to delete when the selector stops matching its
namespace (the garbage collector removes them all with the Bundle). An object of that name that is not ours is
never written: the Bundle reports it as a conflict. While a source is unusable nothing is changed, so every
target keeps the last good anchors.

The watches (controller.runtime) keep namespaces' labels and our targets' digests in memory, so a Bundle whose
targets are up to date costs no request beyond reading its Secret or ConfigMap sources. Those sources are
not watched: they are read again every CERTMINT_ISSUER_RECHECK_SECONDS (an issuer's anchors wake the Bundle at
once).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from certmint.controller.runtime import Operator
from certmint.controller.state import BundleRecord, Kind
from certmint.controller.status import write_status
from certmint.core.bundle import (
    CONFIG_MAP,
    ISSUER,
    SECRET,
    Assembled,
    BundleSource,
    TargetFacts,
    assemble,
    plan_targets,
)
from certmint.core.conditions import Condition
from certmint.kube import resources
from certmint.kube.client import ApiError, ApiUnavailable
from certmint.pki.inspect import certificate_pem

log = logging.getLogger("certmint.bundles")
#: Target writes in flight at once for one Bundle: a rotation reaching 500 namespaces is not 500 requests at once.
WRITE_CONCURRENCY = 8
#: Shown in status.conflictingNamespaces (the count is always complete).
LISTED_CONFLICTS = 20
RETRY_AFTER_FAILURE = datetime.timedelta(seconds=10)


@dataclass
class Outcome:
    """What the writes of one kind of target did."""

    kind: str
    matched: int = 0
    in_sync: int = 0
    conflicts: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    written: int = 0


async def reconcile_bundle(op: Operator, _namespace: str, name: str) -> None:
    key = (Kind.BUNDLE, "", name)
    rec = op.state.bundles.get(name)
    if rec is None:
        op.queue.cancel_timer(key)  # its targets go with it: the garbage collector follows their owner reference
        return
    if not op.bundle_inputs_listed:
        return  # enqueued again once namespaces and targets have been listed
    now = op.now()
    if rec.spec is None:
        await _publish(op, rec, Condition("Ready", "False", "InvalidSpec", rec.spec_error or "invalid spec"), {})
        return
    found = [await _read_source(op, s, now) for s in rec.spec.sources]
    assembled = assemble(found, now)
    good = assembled if isinstance(assembled, Assembled) else None
    selector = rec.spec.namespace_selector
    watched = set(op.settings.watch_namespaces)
    matched = [
        ns for ns, labels in op.state.namespaces.items() if selector.matches(labels) and (not watched or ns in watched)
    ]
    kinds = [("ConfigMap", rec.spec.config_map_key)]
    if rec.spec.secret_key is not None:
        kinds.append(("Secret", rec.spec.secret_key))
    outcomes = [await _write_targets(op, rec, kind, data_key, matched, good) for kind, data_key in kinds]
    trust_bundle = await _publish_cluster_trust_bundle(op, rec, good) if rec.spec.cluster_trust_bundle else None
    previous_digest = rec.status.get("fingerprint")
    condition = _condition(assembled, outcomes, trust_bundle)
    fields: dict[str, Any] = {"targets": [_outcome_status(o) for o in outcomes], "clusterTrustBundle": trust_bundle}
    if good is not None:
        fields |= {"anchors": [a.status() for a in good.anchors], "anchorCount": len(good.anchors)}
        fields["fingerprint"] = good.digest
    await _publish(op, rec, condition, fields)
    if good is not None and previous_digest != good.digest:
        written = sum(o.written for o in outcomes)
        log.info("Bundle %s: %d anchor(s) %s written to %d target(s)", name, len(good.anchors), good.digest, written)
        ref = resources.ObjectRef("Bundle", None, rec.name, rec.uid)
        await op.post_event(ref, "Normal", "AnchorsUpdated", f"{len(good.anchors)} trust anchor(s), {good.digest}")
    failed = any(o.failures for o in outcomes) or (trust_bundle or {}).get("state") == "Failed"
    recheck = RETRY_AFTER_FAILURE if failed else datetime.timedelta(seconds=op.settings.issuer_recheck_seconds)
    if any(s.kind in (SECRET, CONFIG_MAP) for s in rec.spec.sources) or failed:
        op.schedule(key, now + recheck)


async def _read_source(
    op: Operator, source: BundleSource, now: datetime.datetime
) -> tuple[BundleSource, bytes | None, str | None]:
    if source.kind == ISSUER:
        issuer = op.state.issuers.get((Kind.CLUSTER_ISSUER, "", source.name))
        if issuer is None:
            return source, None, "not found"
        if not issuer.checked:
            return source, None, "not checked yet"
        if not issuer.ready or issuer.authority is None:
            return source, None, f"not ready: {issuer.message}"
        # An overlap root that has expired protects nothing: left out rather than holding the Bundle back.
        anchors = [a for a in issuer.authority.trust_anchors if a.not_valid_after_utc > now]
        if not anchors:
            return source, None, "every trust anchor has expired"
        return source, b"".join(certificate_pem(a) for a in anchors), None
    if source.kind in (SECRET, CONFIG_MAP):
        kind = "Secret" if source.kind == SECRET else "ConfigMap"
        obj = await resources.read_target(op.api, kind, op.settings.namespace, source.name)
        if obj is None:
            return source, None, f"not found in namespace {op.settings.namespace}"
        text = resources.target_texts(kind, obj).get(source.key)
        if text is None:
            return source, None, f"has no key {source.key!r}"
        return source, text.encode(), None
    return source, source.pem.encode(), None


def _existing(op: Operator, rec: BundleRecord, kind: str, data_key: str) -> dict[str, TargetFacts]:
    return {
        ns: TargetFacts(t.resource_version, t.digests.get(data_key), rec.uid in t.owner_uids)
        for (k, ns, name), t in op.state.bundle_targets.items()
        if k == kind and name == rec.name
    }


async def _write_targets(
    op: Operator, rec: BundleRecord, kind: str, data_key: str, matched: list[str], good: Assembled | None
) -> Outcome:
    plan = plan_targets(matched, _existing(op, rec, kind, data_key), good.digest if good else None)
    outcome = Outcome(kind, matched=len(matched), in_sync=plan.in_sync, conflicts=list(plan.conflicts))
    owner = resources.ObjectRef("Bundle", None, rec.name, rec.uid)
    text = good.pem if good else ""
    limit = asyncio.Semaphore(WRITE_CONCURRENCY)

    async def attempt(namespace: str, write: Callable[[], Awaitable[Any]], counts: bool = True) -> None:
        async with limit:
            try:
                written = await write()
            except ApiError as e:
                if e.conflict and counts:
                    written = await _adopt_or_conflict(op, rec, kind, namespace, data_key, text)
                    if written is None:
                        outcome.conflicts.append(namespace)
                        return
                else:
                    log.warning("Bundle %s: writing %s %s/%s failed: %s", rec.name, kind, namespace, rec.name, e)
                    outcome.failures.append(f"{namespace}: {e}")
                    return
            except ApiUnavailable as e:
                outcome.failures.append(f"{namespace}: {e}")
                return
            if isinstance(written, dict):
                op.bundle_target_seen(kind, "MODIFIED", written, ours=True)
            if counts:
                outcome.written += 1
                outcome.in_sync += 1

    def create(ns: str) -> Callable[[], Awaitable[Any]]:
        return lambda: resources.create_target(op.api, kind, ns, rec.name, key=data_key, text=text, owner=owner)

    def update(ns: str, rv: str) -> Callable[[], Awaitable[Any]]:
        return lambda: resources.update_target(op.api, kind, ns, rec.name, resource_version=rv, key=data_key, text=text)

    def delete(ns: str, rv: str) -> Callable[[], Awaitable[Any]]:
        return lambda: resources.delete_target(op.api, kind, ns, rec.name, resource_version=rv)

    jobs = [attempt(ns, create(ns)) for ns in plan.create]
    jobs += [attempt(ns, update(ns, rv)) for ns, rv in plan.update]
    # A Secret is never deleted: certmint holds no right to delete Secrets. One left in a namespace that is no
    # longer selected still holds public anchors only, and goes with the Bundle.
    if kind == "ConfigMap":
        jobs += [attempt(ns, delete(ns, rv), counts=False) for ns, rv in plan.delete]
    await asyncio.gather(*jobs)
    return outcome


async def _adopt_or_conflict(
    op: Operator, rec: BundleRecord, kind: str, namespace: str, data_key: str, text: str
) -> dict[str, Any] | None:
    """A create refused because the object exists, or an update refused on a stale resourceVersion: read it;
    write it only if it is ours (its owner reference names this Bundle)."""
    found = await resources.read_target(op.api, kind, namespace, rec.name)
    if found is None or rec.uid not in resources.owner_uids(found):
        return None
    if resources.target_texts(kind, found).get(data_key) == text:
        return found
    rv = found["metadata"]["resourceVersion"]
    return await resources.update_target(
        op.api, kind, namespace, rec.name, resource_version=rv, key=data_key, text=text
    )


async def _publish_cluster_trust_bundle(op: Operator, rec: BundleRecord, good: Assembled | None) -> dict[str, str]:
    """The anchors as a ClusterTrustBundle named after the Bundle, where the API server serves them."""
    try:
        version = await resources.cluster_trust_bundle_version(op.api)
        if version is None:
            return {
                "state": "NotServed",
                "message": "the API server does not serve certificates.k8s.io ClusterTrustBundles",
            }
        if good is None:
            return {"name": rec.name, "state": "Kept", "message": "a source is unusable: the last anchors stay"}
        found = await resources.read_cluster_trust_bundle(op.api, version, rec.name)
        owner = resources.ObjectRef("Bundle", None, rec.name, rec.uid)
        if found is None:
            await resources.create_cluster_trust_bundle(op.api, version, rec.name, pem=good.pem, owner=owner)
        elif rec.uid not in resources.owner_uids(found):
            return {
                "name": rec.name,
                "state": "Conflict",
                "message": f"ClusterTrustBundle {rec.name} exists and is not this Bundle's: left as it is",
            }
        elif (found.get("spec") or {}).get("trustBundle") != good.pem:
            rv = found["metadata"]["resourceVersion"]
            await resources.update_cluster_trust_bundle(op.api, version, rec.name, resource_version=rv, pem=good.pem)
    except (ApiError, ApiUnavailable) as e:
        return {"name": rec.name, "state": "Failed", "message": str(e)[:500]}
    return {"name": rec.name, "apiVersion": f"{resources.CTB_GROUP}/{version}", "state": "Published", "message": ""}


def _outcome_status(o: Outcome) -> dict[str, Any]:
    return {
        "kind": o.kind,
        "namespaces": o.matched,
        "inSync": o.in_sync,
        "conflicts": len(o.conflicts),
        "conflictingNamespaces": sorted(o.conflicts)[:LISTED_CONFLICTS] or None,
    }


def _condition(assembled: Assembled | list[str], outcomes: list[Outcome], ctb: dict[str, str] | None) -> Condition:
    if not isinstance(assembled, Assembled):
        problems = "; ".join(assembled)
        return Condition("Ready", "False", "SourceUnusable", f"{problems}; the targets keep their last good anchors")
    failures = [f"{o.kind} {f}" for o in outcomes for f in o.failures]
    if ctb is not None and ctb.get("state") == "Failed":
        failures.append(f"ClusterTrustBundle: {ctb['message']}")
    if failures:
        shown = "; ".join(failures[:5])
        return Condition("Ready", "False", "WriteFailed", f"{len(failures)} write(s) failed, retrying: {shown}")
    conflicts = [f"{o.kind} in {ns}" for o in outcomes for ns in sorted(o.conflicts)]
    if ctb is not None and ctb.get("state") == "Conflict":
        conflicts.append(f"ClusterTrustBundle {ctb['name']}")
    if conflicts:
        shown = ", ".join(conflicts[:5]) + (" ..." if len(conflicts) > 5 else "")
        return Condition(
            "Ready",
            "False",
            "TargetConflict",
            f"{len(conflicts)} target(s) exist and are not this Bundle's, left untouched: {shown}",
        )
    synced = ", ".join(f"{o.in_sync} {o.kind}(s)" for o in outcomes)
    return Condition("Ready", "True", "Synced", f"{len(assembled.anchors)} trust anchor(s) in {synced}")


async def _publish(op: Operator, rec: BundleRecord, condition: Condition, fields: dict[str, Any]) -> None:
    written = await write_status(
        op.api,
        "Bundle",
        None,
        rec.name,
        rec.status,
        [condition],
        fields,
        now=op.now(),
        observed_generation=rec.generation,
    )
    if written is not None:
        rec.status = dict(written.get("status") or {})
        rec.resource_version = written["metadata"]["resourceVersion"]
