"""Preflight over fake clusters with the real plan/itinerary loaders and renderer."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from statemachine.engine.preflight import PREFETCH_THREADS, Authorizer, run_checks
from statemachine.itinerary import load_itinerary
from statemachine.k8s import ResourceRule, RulesReview
from statemachine.plan import load_plan

from .fakes import FakeCluster

DATA = Path(__file__).resolve().parent.parent / "data" / "engine"


def _clusters(**kw: object) -> dict[str, FakeCluster]:
    source, target = FakeCluster("source"), FakeCluster("target", **kw)  # type: ignore[arg-type]
    for name, data in {"good": {"ok": "yes", "size": "1"}, "notok": {"ok": "no", "size": "1"},
                       "bigger": {"ok": "yes", "size": "2"}}.items():
        source.create({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": f"{name}-src", "namespace": "shop"}, "data": data})
    return {"source": source, "target": target}


def test_every_finding_for_every_vm_is_listed_at_once() -> None:
    plan = load_plan(DATA / "plan-checks.yaml")
    findings = run_checks(plan, load_itinerary(plan.itinerary), _clusters())  # type: ignore[arg-type]
    assert "shop/notok: SourceReady: source is not ready (ok = no)" in findings.problems
    assert any(p.startswith("shop/missing:") and "not found" in p for p in findings.problems)
    assert findings.warnings == ["shop/bigger: SizeMatches: size differs (2)"]
    assert not any(p.startswith("shop/good") for p in findings.problems)


def test_block_if_turns_a_warning_into_a_blocking_problem() -> None:
    plan = load_plan(DATA / "plan-checks.yaml")
    settings = dataclasses.replace(plan.settings, require_matching_instance_types=True)
    plan = dataclasses.replace(plan, settings=settings)
    findings = run_checks(plan, load_itinerary(plan.itinerary), _clusters())  # type: ignore[arg-type]
    assert "shop/bigger: SizeMatches: size differs (2)" in findings.problems and not findings.warnings


def test_missing_permissions_are_listed_with_the_role_rules_that_close_them() -> None:
    plan = load_plan(DATA / "plan-checks.yaml")
    clusters = _clusters(forbidden={("create", "ConfigMap"), ("watch", "ConfigMap")})
    good = [v for v in plan.vms if v.name == "good"]
    findings = run_checks(plan, load_itinerary(plan.itinerary), clusters, vms=good)  # type: ignore[arg-type]
    assert findings.problems == ["target: missing permission: create v1 ConfigMap in namespace shop",
                                 "target: missing permission: watch v1 ConfigMap in namespace shop"]
    rules = "\n".join(findings.rules)
    assert 'resources: ["configmaps"]' in rules and 'verbs: ["create", "watch"]' in rules


class _RulesCluster(FakeCluster):
    """Answers rules reviews from ``rules``: complete unless ``incomplete``; counts requests."""

    def __init__(self, rules: list[ResourceRule], *, incomplete: bool = False) -> None:
        super().__init__("c")
        self.review = RulesReview(tuple(rules), incomplete)

    def resource_of(self, api_version: str, kind: str) -> tuple[str, bool] | None:
        return {"ConfigMap": ("configmaps", True), "Job": ("jobs", True),
                "StorageClass": ("storageclasses", False)}.get(kind)

    def rules(self, namespace: str) -> RulesReview:
        self.calls.append(("rules", namespace))
        return self.review


def _rule(verbs: str, groups: str, resources: str, names: str = "") -> ResourceRule:
    """A rule from comma-separated lists (``""`` is the core group)."""
    return ResourceRule(frozenset(verbs.split(",")), frozenset(groups.split(",")),
                        frozenset(resources.split(",")), frozenset(filter(None, names.split(","))))


def test_one_rules_review_per_namespace_answers_every_namespaced_question() -> None:
    cluster = _RulesCluster([_rule("get,list,watch,create", "", "configmaps"),
                             _rule("*", "batch", "jobs")])
    auth = Authorizer({"target": cluster})
    for ns in ("shop", "shop", "bank"):
        for verb in ("create", "get", "watch", "delete"):
            auth.allowed("target", verb, "batch/v1", "Job", ns)
            auth.allowed("target", verb, "v1", "ConfigMap", ns)
    assert [c for c in cluster.calls if c[0] == "rules"] == [("rules", "shop"), ("rules", "bank")]
    assert [c for c in cluster.calls if c[0] == "can_i"] == []  # complete reviews: no SSARs
    assert auth.allowed("target", "create", "batch/v1", "Job", "shop")
    assert not auth.allowed("target", "delete", "v1", "ConfigMap", "shop")


def test_incomplete_reviews_cluster_scoped_kinds_and_named_rules_fall_back_to_access_reviews() -> None:
    cluster = _RulesCluster([_rule("get", "", "configmaps", names="only-this")], incomplete=True)
    auth = Authorizer({"target": cluster})
    assert auth.allowed("target", "get", "v1", "ConfigMap", "shop")  # FakeCluster.can_i: allowed
    assert auth.allowed("target", "get", "v1", "ConfigMap", "shop")  # asked once, remembered
    assert auth.allowed("target", "list", "storage.k8s.io/v1", "StorageClass", "")
    asked = [c for c in cluster.calls if c[0] == "can_i"]
    assert asked == [("can_i", "ConfigMap"), ("can_i", "StorageClass")]


def test_findings_from_rules_reviews_read_as_from_access_reviews() -> None:
    plan = load_plan(DATA / "plan-checks.yaml")
    good = [v for v in plan.vms if v.name == "good"]
    itinerary = load_itinerary(plan.itinerary)
    # The same missing verbs, once found by SSARs (incomplete review), once by a complete review.
    by_ssar = run_checks(plan, itinerary, _clusters(forbidden={("create", "ConfigMap"),
                                                               ("watch", "ConfigMap")}),
                         vms=good)  # type: ignore[arg-type]
    clusters = _clusters()
    target = _RulesCluster([_rule("get,list,delete,patch", "", "configmaps"),
                            _rule("create", "", "events")])
    target.objects = clusters["target"].objects
    by_rules = run_checks(plan, itinerary, {"source": clusters["source"], "target": target},
                          vms=good)  # type: ignore[arg-type]
    assert by_rules.problems == by_ssar.problems
    assert by_rules.rules == by_ssar.rules


def test_prefetch_asks_every_review_at_once_and_allowed_then_asks_nothing() -> None:
    import threading
    import time

    class Slow(_RulesCluster):
        """Each review takes 50 ms; records how many were in flight together."""

        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, **kw)  # type: ignore[arg-type]
            self.lock, self.now, self.most = threading.Lock(), 0, 0

        def _slow(self) -> None:
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            time.sleep(0.05)
            with self.lock:
                self.now -= 1

        def rules(self, namespace: str) -> RulesReview:
            self._slow()
            return super().rules(namespace)

        def can_i(self, verb: str, api_version: str, kind: str, namespace: str = "") -> bool:
            self._slow()
            return super().can_i(verb, api_version, kind, namespace)

    cluster = Slow([_rule("get,create", "", "configmaps")], incomplete=True)
    questions = [("target", verb, "v1", "ConfigMap", ns) for ns in ("shop", "bank", "zoo")
                 for verb in ("get", "delete")]
    questions += [("target", "list", "storage.k8s.io/v1", "StorageClass", "")]
    auth = Authorizer({"target": cluster})
    auth.prefetch(questions)
    # The three rules reviews, then the four questions they leave open (the incomplete reviews
    # do not grant delete; StorageClass is cluster-scoped), each batch PREFETCH_THREADS at a time.
    assert sorted(c for c in cluster.calls if c[0] == "rules") == [
        ("rules", "bank"), ("rules", "shop"), ("rules", "zoo")]
    assert len([c for c in cluster.calls if c[0] == "can_i"]) == 4
    assert cluster.most == min(3, PREFETCH_THREADS)  # in flight together, up to the bound
    before = list(cluster.calls)
    answers = [auth.allowed(*q) for q in questions]
    assert cluster.calls == before  # every answer came from the prefetch
    assert answers == [True] * len(questions)  # FakeCluster.can_i allows what is not forbidden


# --- check_role_grants beyond Roles: ClusterRoles and the roles bindings bind ------------------

_RBAC = "rbac.authorization.k8s.io/v1"


def _binding(kind: str, name: str, role_kind: str, role: str, ns: str = "shop") -> dict[str, object]:
    meta = {"name": name, **({"namespace": ns} if kind == "RoleBinding" else {})}
    return {"apiVersion": _RBAC, "kind": kind, "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": [{"kind": "User", "name": "someone"}]}


def _grant_findings(cluster: FakeCluster, *manifests: dict[str, object]) -> list[str]:
    from statemachine.engine.preflight import Findings, check_role_grants
    from statemachine.render import RenderedManifest

    findings = Findings()
    rendered = [RenderedManifest("S", "c", "apply", dict(m)) for m in manifests]
    check_role_grants(rendered, findings, Authorizer({"c": cluster}))  # type: ignore[dict-item]
    return findings.problems


def test_a_binding_of_a_role_that_does_not_exist_is_refused_unless_the_runner_may_bind() -> None:
    cluster = _RulesCluster([_rule("get", "", "configmaps")])
    binding = _binding("RoleBinding", "b", "Role", "gone")
    assert _grant_findings(cluster, binding) == [
        "c: RoleBinding shop/b of state S binds Role shop/gone, which does not exist "
        "(a binding may name a missing role only with bind on it)"]
    binder = _RulesCluster([_rule("bind", "rbac.authorization.k8s.io", "roles", names="gone")])
    assert _grant_findings(binder, binding) == []
    assert ("get", "Role") not in binder.calls  # bind allowed: the role is not even read


def test_a_binding_of_a_role_the_run_creates_is_judged_with_that_role() -> None:
    cluster = _RulesCluster([_rule("get", "", "configmaps"),
                             _rule("create", "rbac.authorization.k8s.io", "roles,rolebindings")])
    role = {"apiVersion": _RBAC, "kind": "Role", "metadata": {"name": "r", "namespace": "shop"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}
    assert _grant_findings(cluster, role, _binding("RoleBinding", "b", "Role", "r")) == []
    assert ("get", "Role") not in cluster.calls


def test_a_runner_who_may_escalate_but_not_bind_a_role_the_run_creates_must_hold_it() -> None:
    cluster = _RulesCluster([_rule("escalate", "rbac.authorization.k8s.io", "roles")])
    role = {"apiVersion": _RBAC, "kind": "Role", "metadata": {"name": "r", "namespace": "shop"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["delete"]}]}
    binding = _binding("RoleBinding", "b", "Role", "r")
    assert _grant_findings(cluster, role, binding) == [
        "c: missing permission: delete secrets in namespace shop, which RoleBinding b of state S "
        "grants by binding Role shop/r (a binding may grant only what its creator holds, unless "
        "it may bind the role)"]
    assert _grant_findings(cluster, role) == []  # escalate: the Role itself is fine
    assert ("get", "Role") not in cluster.calls  # the rendered role, not read


def test_a_bound_role_is_judged_in_the_bindings_scope() -> None:
    # The runner holds pods/status in "shop" through "*/status" (the same matcher as the server's).
    cluster = _RulesCluster([_rule("get,update", "", "*/status")])
    cluster.create({"apiVersion": _RBAC, "kind": "ClusterRole", "metadata": {"name": "st"},
                    "rules": [{"apiGroups": [""], "resources": ["pods/status"],
                               "verbs": ["update"]}]})
    assert _grant_findings(cluster, _binding("RoleBinding", "b", "ClusterRole", "st")) == []
    # Cluster-wide, a SelfSubjectAccessReview per permission (FakeCluster: forbidden pairs).
    cluster.forbidden = {("update", "pods/status"), ("bind", "clusterroles")}
    assert _grant_findings(cluster, _binding("ClusterRoleBinding", "cb", "ClusterRole", "st")) == [
        "c: missing permission: update pods/status (cluster-wide), which ClusterRoleBinding cb "
        "of state S grants by binding ClusterRole st (a binding may grant only what its creator "
        "holds, unless it may bind the role)"]


def test_an_aggregated_cluster_role_needs_every_permission_unless_the_runner_may_escalate() -> None:
    cluster = _RulesCluster([])
    cluster.forbidden = {("*", "*"), ("escalate", "clusterroles")}
    role = {"apiVersion": _RBAC, "kind": "ClusterRole", "metadata": {"name": "agg"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}}
    assert _grant_findings(cluster, role) == [
        "c: missing permission: * * * (cluster-wide), which ClusterRole agg of state S needs for "
        "its aggregationRule (an aggregated ClusterRole needs every permission of its creator)"]
    cluster.forbidden = {("*", "*")}  # may escalate clusterroles
    assert _grant_findings(cluster, role) == []


def test_a_namespace_without_a_complete_rules_review_is_left_to_the_server() -> None:
    cluster = _RulesCluster([], incomplete=True)
    cluster.forbidden = {("escalate", "roles"), ("bind", "clusterroles")}
    cluster.create({"apiVersion": _RBAC, "kind": "ClusterRole", "metadata": {"name": "st"},
                    "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]})
    role = {"apiVersion": _RBAC, "kind": "Role", "metadata": {"name": "r", "namespace": "shop"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["delete"]}]}
    assert _grant_findings(cluster, role, _binding("RoleBinding", "b", "ClusterRole", "st")) == []
