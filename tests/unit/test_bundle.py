"""The Bundle's pure core: its spec, the namespace selector, the anchors it assembles and the writes it plans.

The controller (controller.bundles) gathers sources and targets through the API and carries out the plan;
tests/integration/test_bundles.py covers that path against a real API server.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from certmint.core.bundle import (
    Assembled,
    BundleSource,
    BundleSpec,
    LabelSelector,
    SelectorRequirement,
    TargetFacts,
    TargetPlan,
    assemble,
    content_digest,
    plan_targets,
)
from certmint.core.spec import SpecError
from certmint.pki.signing import fingerprint_sha256
from tests.unit.builders import NOW, CAPair, build_ca, cached_key

# -- the spec --------------------------------------------------------------------------------------------

MINIMAL: dict[str, Any] = {
    "sources": [{"issuer": {"name": "mesh"}}],
    "target": {"configMap": {"key": "ca.crt"}},
}


def test_minimal_spec_gets_every_default() -> None:
    spec = BundleSpec.from_dict(MINIMAL)
    assert spec.sources == (BundleSource("issuer", name="mesh"),)
    assert spec.config_map_key == "ca.crt"
    assert spec.secret_key is None, "a Secret target only when asked for"
    assert spec.namespace_selector == LabelSelector(), "no selector: every namespace"
    assert spec.cluster_trust_bundle is True, "published where served unless publish: Never"
    assert spec.issuers == ("mesh",)


def test_full_spec_is_parsed_field_by_field() -> None:
    pem = "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"
    spec = BundleSpec.from_dict(
        {
            "sources": [
                {"issuer": {"name": "mesh", "kind": "ClusterIssuer"}},
                {"secret": {"name": "legacy-ca", "key": "ca.crt"}},
                {"configMap": {"name": "partner-roots", "key": "roots.pem"}},
                {"inline": pem},
                {"issuer": {"name": "edge"}},
            ],
            "target": {
                "configMap": {"key": "trust.pem"},
                "secret": {"key": "trust.pem"},
                "namespaceSelector": {
                    "matchLabels": {"mesh": "on", "env": "prod"},
                    "matchExpressions": [
                        {"key": "tier", "operator": "In", "values": ["web", "api"]},
                        {"key": "legacy", "operator": "DoesNotExist"},
                    ],
                },
            },
            "clusterTrustBundle": {"publish": "Never"},
        }
    )
    assert spec.sources == (
        BundleSource("issuer", name="mesh"),
        BundleSource("secret", name="legacy-ca", key="ca.crt"),
        BundleSource("configMap", name="partner-roots", key="roots.pem"),
        BundleSource("inline", pem=pem),
        BundleSource("issuer", name="edge"),
    )
    assert spec.issuers == ("mesh", "edge"), "in source order"
    assert (spec.config_map_key, spec.secret_key) == ("trust.pem", "trust.pem")
    assert spec.namespace_selector == LabelSelector(
        match_labels=(("env", "prod"), ("mesh", "on")),
        expressions=(
            SelectorRequirement("tier", "In", ("web", "api")),
            SelectorRequirement("legacy", "DoesNotExist"),
        ),
    )
    assert spec.cluster_trust_bundle is False


def test_publish_if_served_keeps_the_cluster_trust_bundle() -> None:
    spec = BundleSpec.from_dict({**MINIMAL, "clusterTrustBundle": {"publish": "IfServed"}})
    assert spec.cluster_trust_bundle is True


def test_sources_describe_themselves_for_conditions() -> None:
    assert BundleSource("issuer", name="mesh").describe() == "ClusterIssuer mesh"
    assert BundleSource("secret", name="s", key="k").describe() == "Secret s key k"
    assert BundleSource("configMap", name="c", key="k").describe() == "ConfigMap c key k"
    assert BundleSource("inline", pem="x").describe() == "inline PEM"


def _target(**changes: Any) -> dict[str, Any]:
    return {**MINIMAL, "target": {**MINIMAL["target"], **changes}}


def _selector(**selector: Any) -> dict[str, Any]:
    return _target(namespaceSelector=selector)


def _sources(*sources: Any) -> dict[str, Any]:
    return {**MINIMAL, "sources": list(sources)}


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ({"target": MINIMAL["target"]}, "spec.sources", "spec.sources: needs at least one source"),
        (_sources(), "spec.sources", "spec.sources: needs at least one source"),
        ({**MINIMAL, "sources": {"issuer": {"name": "x"}}}, "spec.sources", "needs at least one source"),
        ({"sources": MINIMAL["sources"]}, "spec.target", "spec.target: is required"),
        ({**MINIMAL, "target": {}}, "spec.target.configMap", "spec.target.configMap: is required"),
        (
            _target(configMap={}),
            "spec.target.configMap.key",
            "spec.target.configMap.key: is required and must be a non-empty string",
        ),
        (_target(configMap={"key": ""}), "spec.target.configMap.key", "spec.target.configMap.key: is required"),
        (_target(secret="trust.pem"), "spec.target.secret", "spec.target.secret: must be an object"),
        (_target(secret={}), "spec.target.secret.key", "spec.target.secret.key: is required"),
        (
            {**MINIMAL, "clusterTrustBundle": "Never"},
            "spec.clusterTrustBundle",
            "spec.clusterTrustBundle: must be an object",
        ),
        (_sources("mesh"), "spec.sources[0]", "spec.sources[0]: must be an object"),
        (
            _sources({}),
            "spec.sources[0]",
            "spec.sources[0]: exactly one of issuer, secret, configMap, inline must be set, got 0",
        ),
        (
            _sources({"issuer": {"name": "a"}}, {"issuer": {"name": "b"}, "inline": "PEM"}),
            "spec.sources[1]",
            "spec.sources[1]: exactly one of issuer, secret, configMap, inline must be set, got 2",
        ),
        (_sources({"inline": ""}), "spec.sources[0]", "got 0"),
        (_sources({"issuer": "mesh"}), "spec.sources[0].issuer", "spec.sources[0].issuer: must be an object"),
        (_sources({"issuer": {}}), "spec.sources[0].issuer.name", "spec.sources[0].issuer.name: is required"),
        (
            _sources({"issuer": {"name": "mesh", "kind": "Issuer"}}),
            "spec.sources[0].issuer.kind",
            "spec.sources[0].issuer.kind: must be ClusterIssuer (a Bundle is cluster-wide), got 'Issuer'",
        ),
        (_sources({"secret": {"name": "s"}}), "spec.sources[0].secret.key", "spec.sources[0].secret.key:"),
        (
            _sources({"configMap": {"name": 7, "key": "k"}}),
            "spec.sources[0].configMap.name",
            "spec.sources[0].configMap.name: is required and must be a non-empty string",
        ),
        (
            _target(namespaceSelector="mesh=on"),
            "spec.target.namespaceSelector",
            "spec.target.namespaceSelector: must be an object",
        ),
        (
            _selector(matchLabels={"mesh": True}),
            "spec.target.namespaceSelector.matchLabels",
            "spec.target.namespaceSelector.matchLabels: must map label keys to string values",
        ),
        (
            _selector(matchLabels=["mesh"]),
            "spec.target.namespaceSelector.matchLabels",
            "spec.target.namespaceSelector.matchLabels: must map",
        ),
        (
            _selector(matchExpressions=["mesh"]),
            "spec.target.namespaceSelector.matchExpressions[0]",
            "spec.target.namespaceSelector.matchExpressions[0]: must be an object",
        ),
        (
            _selector(matchExpressions=[{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Gt"}]),
            "spec.target.namespaceSelector.matchExpressions[1].operator",
            "spec.target.namespaceSelector.matchExpressions[1].operator: must be one of In, NotIn, Exists, "
            "DoesNotExist, got 'Gt'",
        ),
        (
            _selector(matchExpressions=[{"key": "a", "operator": "In"}]),
            "spec.target.namespaceSelector.matchExpressions[0].values",
            "spec.target.namespaceSelector.matchExpressions[0].values: must not be empty for In",
        ),
        (
            _selector(matchExpressions=[{"key": "a", "operator": "NotIn", "values": []}]),
            "spec.target.namespaceSelector.matchExpressions[0].values",
            "must not be empty for NotIn",
        ),
        (
            _selector(matchExpressions=[{"key": "a", "operator": "Exists", "values": ["x"]}]),
            "spec.target.namespaceSelector.matchExpressions[0].values",
            "spec.target.namespaceSelector.matchExpressions[0].values: must be empty for Exists",
        ),
        (
            _selector(matchExpressions=[{"key": "a", "operator": "DoesNotExist", "values": ["x"]}]),
            "spec.target.namespaceSelector.matchExpressions[0].values",
            "must be empty for DoesNotExist",
        ),
        (
            _selector(matchExpressions=[{"operator": "Exists"}]),
            "spec.target.namespaceSelector.matchExpressions[0].key",
            "spec.target.namespaceSelector.matchExpressions[0].key: is required",
        ),
    ],
)
def test_invalid_bundle_specs_name_the_field(body: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        BundleSpec.from_dict(body)
    assert str(caught.value).startswith(f"{path}: "), "the message starts with the field path"
    assert message in str(caught.value)
    assert caught.value.field == path


# -- the namespace selector ------------------------------------------------------------------------------


def _requirement(key: str, operator: str, *values: str) -> LabelSelector:
    return LabelSelector(expressions=(SelectorRequirement(key, operator, values),))


def test_an_empty_selector_matches_every_namespace() -> None:
    assert LabelSelector().matches({})
    assert LabelSelector().matches({"anything": "at-all"})
    assert LabelSelector.from_dict(None, "spec.target.namespaceSelector") == LabelSelector()
    assert LabelSelector.from_dict({}, "spec.target.namespaceSelector") == LabelSelector()


def test_match_labels_needs_every_label_with_its_value() -> None:
    selector = LabelSelector(match_labels=(("env", "prod"), ("mesh", "on")))
    assert selector.matches({"mesh": "on", "env": "prod", "team": "a"})
    assert not selector.matches({"mesh": "on"}), "one label missing"
    assert not selector.matches({"mesh": "off", "env": "prod"}), "one value different"
    assert not selector.matches({})


@pytest.mark.parametrize(
    ("selector", "labels", "matched"),
    [
        (_requirement("tier", "In", "web", "api"), {"tier": "api"}, True),
        (_requirement("tier", "In", "web", "api"), {"tier": "db"}, False),
        (_requirement("tier", "In", "web", "api"), {}, False),
        (_requirement("tier", "NotIn", "db"), {"tier": "web"}, True),
        (_requirement("tier", "NotIn", "db"), {"tier": "db"}, False),
        (_requirement("tier", "NotIn", "db"), {}, True),  # as Kubernetes: an absent key is not in the set
        (_requirement("tier", "Exists"), {"tier": ""}, True),
        (_requirement("tier", "Exists"), {"other": "x"}, False),
        (_requirement("legacy", "DoesNotExist"), {"tier": "web"}, True),
        (_requirement("legacy", "DoesNotExist"), {"legacy": ""}, False),
    ],
)
def test_match_expressions_follow_kubernetes(selector: LabelSelector, labels: dict[str, str], matched: bool) -> None:
    assert selector.matches(labels) is matched


def test_labels_and_expressions_are_all_required() -> None:
    selector = LabelSelector.from_dict(
        {
            "matchLabels": {"mesh": "on"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        },
        "spec.target.namespaceSelector",
    )
    assert selector.matches({"mesh": "on", "tier": "web"})
    assert not selector.matches({"mesh": "off", "tier": "web"}), "matchLabels fails"
    assert not selector.matches({"mesh": "on", "tier": "api"}), "the first expression fails"
    assert not selector.matches({"mesh": "on", "tier": "web", "legacy": "yes"}), "the second expression fails"


# -- assembling the anchors ------------------------------------------------------------------------------

ROOT_A = build_ca("Bundle Root A", key=cached_key())
ROOT_B = build_ca("Bundle Root B")
ROOT_C = build_ca("Bundle Root C")
ISSUER = BundleSource("issuer", name="mesh")
SECRET = BundleSource("secret", name="legacy-ca", key="ca.crt")
CONFIG_MAP = BundleSource("configMap", name="partner-roots", key="roots.pem")
INLINE = BundleSource("inline", pem="(inline)")


def _pem(*cas: CAPair) -> bytes:
    return b"".join(ca.cert_pem for ca in cas)


def _assembled(result: Assembled | list[str]) -> Assembled:
    assert isinstance(result, Assembled), f"expected anchors, got problems: {result}"
    return result


def _problems(result: Assembled | list[str]) -> list[str]:
    assert isinstance(result, list), f"expected problems, got {len(result.anchors)} anchor(s)"
    return result


def test_anchors_keep_source_order_and_the_pem_is_theirs() -> None:
    result = _assembled(assemble([(ISSUER, _pem(ROOT_B, ROOT_A), None), (INLINE, _pem(ROOT_C), None)], NOW))
    assert [a.certificate for a in result.anchors] == [ROOT_B.cert, ROOT_A.cert, ROOT_C.cert]
    assert [a.source for a in result.anchors] == ["ClusterIssuer mesh", "ClusterIssuer mesh", "inline PEM"]
    assert result.pem == _pem(ROOT_B, ROOT_A, ROOT_C).decode()
    assert result.digest == content_digest(result.pem)
    assert len(result.digest) == 16 and int(result.digest, 16) >= 0


def test_an_anchor_given_twice_appears_once_credited_to_its_first_source() -> None:
    result = _assembled(
        assemble(
            [
                (SECRET, _pem(ROOT_A), None),
                (ISSUER, _pem(ROOT_B, ROOT_A), None),
                (CONFIG_MAP, _pem(ROOT_B, ROOT_B), None),
            ],
            NOW,
        )
    )
    assert [a.certificate for a in result.anchors] == [ROOT_A.cert, ROOT_B.cert]
    assert [a.source for a in result.anchors] == ["Secret legacy-ca key ca.crt", "ClusterIssuer mesh"]
    assert result.pem == _pem(ROOT_A, ROOT_B).decode()


def test_anchor_status_names_the_certificate_and_its_source() -> None:
    (anchor,) = _assembled(assemble([(ISSUER, _pem(ROOT_A), None)], NOW)).anchors
    assert anchor.status() == {
        "subject": "CN=Bundle Root A",
        "fingerprint": fingerprint_sha256(ROOT_A.cert),
        "notAfter": "2031-01-01T12:00:00Z",
        "source": "ClusterIssuer mesh",
    }


def test_a_certificate_that_is_not_a_ca_is_refused() -> None:
    leaf = build_ca("web.default.svc", ca=False)
    no_constraints = build_ca("Legacy Without basicConstraints", ca=None)
    problems = _problems(assemble([(ISSUER, _pem(ROOT_A), None), (SECRET, _pem(leaf, no_constraints), None)], NOW))
    assert problems == [
        "Secret legacy-ca key ca.crt: CN=web.default.svc is not a CA certificate (basicConstraints CA:TRUE)",
        "Secret legacy-ca key ca.crt: CN=Legacy Without basicConstraints is not a CA certificate "
        "(basicConstraints CA:TRUE)",
    ]


def test_an_expired_anchor_is_refused_from_the_moment_it_expires() -> None:
    expired = build_ca("Old Root", not_before=NOW - timedelta(days=30), not_after=NOW)
    problems = _problems(assemble([(CONFIG_MAP, _pem(ROOT_A, expired), None)], NOW))
    assert problems == ["ConfigMap partner-roots key roots.pem: CN=Old Root expired at 2030-01-01T12:00:00Z"]
    # One second earlier it was still valid.
    earlier = _assembled(assemble([(CONFIG_MAP, _pem(ROOT_A, expired), None)], NOW - timedelta(seconds=1)))
    assert len(earlier.anchors) == 2


@pytest.mark.parametrize(
    "garbage",
    [
        b"not a certificate at all",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"",
    ],
)
def test_garbage_pem_is_refused(garbage: bytes) -> None:
    (problem,) = _problems(assemble([(INLINE, garbage, None)], NOW))
    assert problem.startswith("inline PEM: ")
    assert "PEM" in problem.removeprefix("inline PEM: ")


def test_a_missing_source_reports_its_problem() -> None:
    problems = _problems(
        assemble(
            [
                (ISSUER, _pem(ROOT_A), None),
                (SECRET, None, "Secret certmint/legacy-ca does not exist"),
                (CONFIG_MAP, None, None),
            ],
            NOW,
        )
    )
    assert problems == [
        "Secret legacy-ca key ca.crt: Secret certmint/legacy-ca does not exist",
        "ConfigMap partner-roots key roots.pem: gave nothing",
    ]


def test_every_bad_source_is_reported_and_no_partial_anchors_are_given() -> None:
    expired = build_ca("Old Root", not_after=NOW - timedelta(days=1))
    result = assemble(
        [
            (ISSUER, None, "ClusterIssuer mesh is not Ready"),
            (SECRET, _pem(ROOT_A), None),
            (CONFIG_MAP, _pem(expired), None),
            (INLINE, b"garbage", None),
        ],
        NOW,
    )
    problems = _problems(result)
    assert [p.split(":")[0] for p in problems] == [
        "ClusterIssuer mesh",
        "ConfigMap partner-roots key roots.pem",
        "inline PEM",
    ]


def test_the_digest_follows_the_content() -> None:
    one = _assembled(assemble([(ISSUER, _pem(ROOT_A), None)], NOW))
    again = _assembled(assemble([(SECRET, _pem(ROOT_A), None)], NOW + timedelta(days=1)))
    announced = _assembled(assemble([(ISSUER, _pem(ROOT_A, ROOT_B), None)], NOW))
    reordered = _assembled(assemble([(ISSUER, _pem(ROOT_B, ROOT_A), None)], NOW))
    assert one.digest == again.digest, "same anchors, same digest, whichever source and time"
    assert len({one.digest, announced.digest, reordered.digest}) == 3


def test_content_digest_reads_text_and_bytes_alike() -> None:
    assert content_digest("abc") == content_digest(b"abc") == "ba7816bf8f01cfea"


# -- planning the targets --------------------------------------------------------------------------------


def _facts(rv: str, digest: str | None, *, owned: bool = True) -> TargetFacts:
    return TargetFacts(resource_version=rv, digest=digest, owned=owned)


def test_each_matched_namespace_gets_what_it_needs() -> None:
    existing = {
        "synced": _facts("11", "new"),
        "stale": _facts("12", "old"),
        "keyless": _facts("13", None),
        "foreign": _facts("14", "new", owned=False),
        "left": _facts("15", "old"),
        "left-foreign": _facts("16", "old", owned=False),
    }
    plan = plan_targets(["synced", "stale", "keyless", "foreign", "fresh", "other-fresh"], existing, "new")
    assert plan == TargetPlan(
        create=("fresh", "other-fresh"),
        update=(("keyless", "13"), ("stale", "12")),
        delete=(("left", "15"),),
        conflicts=("foreign",),
        in_sync=1,
    )
    assert plan.writes == 5


def test_a_target_that_is_not_ours_is_a_conflict_even_when_its_content_is_right() -> None:
    plan = plan_targets(["a"], {"a": _facts("1", "d", owned=False)}, "d")
    assert plan == TargetPlan(conflicts=("a",))
    assert plan.writes == 0


def test_an_unmatched_namespace_loses_only_our_target() -> None:
    plan = plan_targets([], {"ours": _facts("7", "d"), "theirs": _facts("8", "d", owned=False)}, "d")
    assert plan == TargetPlan(delete=(("ours", "7"),))


def test_everything_in_sync_writes_nothing() -> None:
    existing = {ns: _facts("1", "d") for ns in ("a", "b", "c")}
    plan = plan_targets(["c", "a", "b"], existing, "d")
    assert plan == TargetPlan(in_sync=3)
    assert plan.writes == 0


def test_without_anchors_nothing_is_created_or_changed_but_unmatched_targets_still_go() -> None:
    existing = {
        "stale": _facts("2", "old"),
        "foreign": _facts("3", "old", owned=False),
        "left": _facts("4", "old"),
    }
    plan = plan_targets(["stale", "foreign", "fresh"], existing, None)
    assert plan.create == ()
    assert plan.update == (), "the last good content stays"
    assert plan.delete == (("left", "4"),)
    assert plan.conflicts == ("foreign",)
    assert plan.writes == 1
