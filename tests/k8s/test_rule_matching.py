"""RBAC rule matching of a rules review (``statemachine.k8s.resource_matches``, behind
``RulesReview.allows`` and ``RulesReview.covers``), pattern by pattern, as Kubernetes' RBAC
matches a rule's resources: ``*`` everything, a name itself only, ``*/sub`` that subresource of
any resource, and no other wildcard."""
from __future__ import annotations

import pytest

from statemachine.k8s import ResourceRule, RulesReview, resource_matches


def _review(resources: list[str], *, names: list[str] | None = None) -> RulesReview:
    rule = {"verbs": ["get", "update"], "apiGroups": ["", "kubevirt.io"], "resources": resources}
    if names:
        rule["resourceNames"] = names
    return RulesReview.from_status({"resourceRules": [rule], "incomplete": False})


# (rule resources, requested resource, matches)
CASES = [
    # "*": every resource, and every subresource too (upstream checks it before subresources).
    (["*"], "pods", True),
    (["*"], "pods/status", True),
    (["*"], "virtualmachineinstances/pause", True),
    # A resource: itself only, none of its subresources.
    (["pods"], "pods", True),
    (["pods"], "pods/status", False),
    (["pods"], "services", False),
    # A resource's subresource: itself only, not the resource, nor another subresource.
    (["pods/status"], "pods/status", True),
    (["pods/status"], "pods", False),
    (["pods/status"], "pods/log", False),
    (["pods/status"], "services/status", False),
    # "*/sub": that subresource of any resource; not the resources, nor another subresource.
    (["*/status"], "pods/status", True),
    (["*/status"], "virtualmachines/status", True),
    (["*/status"], "pods", False),
    (["*/status"], "pods/log", False),
    (["*/status"], "status", False),
    (["*/scale"], "deployments/scale", True),
    (["*/scale"], "deployments/scalers", False),
    # "res/*" and "*/*" are no wildcards: they match only a subresource literally named "*".
    (["pods/*"], "pods/status", False),
    (["pods/*"], "pods", False),
    (["*/*"], "pods/status", False),
    (["*/*"], "pods", False),
    # One of several resources is enough; none is nothing.
    (["services", "*/status"], "pods/status", True),
    ([], "pods", False),
]


@pytest.mark.parametrize(("resources", "resource", "matches"), CASES)
def test_resource_patterns_match_as_kubernetes_rbac(resources: list[str], resource: str,
                                                    matches: bool) -> None:
    assert resource_matches(resources, resource) is matches
    review = _review(resources)
    # Authorization and a Role's grant judge a resource alike (one matcher).
    assert review.allows("get", "", resource) is matches
    assert review.covers("get", "", resource) is matches


def test_verbs_and_api_groups_still_have_to_match() -> None:
    review = _review(["*/status"])
    assert review.allows("update", "kubevirt.io", "virtualmachines/status")
    assert not review.allows("delete", "", "pods/status")
    assert not review.allows("get", "apps", "deployments/status")
    everything = RulesReview((ResourceRule(frozenset("*"), frozenset("*"), frozenset("*")),), False)
    assert everything.allows("delete", "apps", "deployments/scale")


def test_a_rule_limited_to_names_allows_those_names_only_never_the_kind() -> None:
    review = _review(["*/pause"], names=["web-1"])
    assert review.allows("update", "kubevirt.io", "virtualmachineinstances/pause", "web-1")
    assert review.covers("update", "kubevirt.io", "virtualmachineinstances/pause", "web-1")
    assert not review.allows("update", "kubevirt.io", "virtualmachineinstances/pause", "web-2")
    assert not review.allows("update", "kubevirt.io", "virtualmachineinstances/pause")
    assert not review.covers("update", "kubevirt.io", "virtualmachineinstances/pause")


@pytest.mark.parametrize(("resources", "resource", "matches"), CASES)
def test_the_simulated_apiserver_authorizes_as_preflight_judges(resources: list[str],
                                                                resource: str,
                                                                matches: bool) -> None:
    # The simulator's RBAC authorizer is its own implementation (statemachine.sim.auth); the
    # two agreeing is what lets the end-to-end tests prove preflight refuses what a server would.
    from statemachine.sim import auth

    res, _, sub = resource.partition("/")
    rule = {"verbs": ["get"], "apiGroups": [""], "resources": resources}
    assert auth.rule_allows(rule, auth.Attributes("u", "get", "", res, subresource=sub)) is matches
