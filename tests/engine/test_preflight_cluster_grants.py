"""Preflight requires of the runner what the ClusterRoles its run creates grant, and what the
existing roles its RoleBindings and ClusterRoleBindings bind grant, where they grant it
(Kubernetes' escalation check, which the simulated clusters enforce as a real one does): a user
who may write them but holds neither the permissions nor ``escalate``/``bind`` is refused with
exit 3 before anything is applied, and the server refuses the same objects; a user who holds the
permissions (the pause subresource through a ``*/pause`` rule among them), or who may escalate
and bind, runs to the end and the server accepts every object."""
from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.dynamic import exceptions as dexc

import statemachine.commands as commands
from statemachine.errors import PreflightError
from statemachine.itinerary import load_itinerary
from statemachine.plan import load_plan
from statemachine.sim.cluster import SimulatedClusters
from tests.engine.test_e2e import DATA, run_lib, write_plan

ITINERARY = DATA / "itinerary-cluster-grants.yaml"
BINDING = "(a binding may grant only what its creator holds, unless it may bind the role)"


@pytest.fixture
def cgrants_sim(tmp_path: Path) -> Iterator[SimulatedClusters]:
    with SimulatedClusters(seed=DATA / "seed-cluster-grants.yaml", tick=0.02,
                           kubeconfig_out=tmp_path / "kubeconfig") as sim:
        yield sim


def _made(sim: SimulatedClusters) -> list[str]:
    """Every RBAC object a run may have created (the seed's have other names)."""
    store = sim.store("target")
    return sorted(f"{kind} {o['metadata']['name']}"
                  for kind, ns in (("ClusterRole", ""), ("ClusterRoleBinding", ""),
                                   ("RoleBinding", "shop"))
                  for o in store.list(kind, ns)
                  if o["metadata"]["name"].startswith("g-"))


def _refused(plan_path: Path, tmp_path: Path) -> list[str]:
    plan = load_plan(plan_path)
    with pytest.raises(PreflightError) as info:
        commands.run(plan, load_itinerary(plan.itinerary), state_dir=tmp_path / "state",
                     output="json", stream=io.StringIO())
    assert info.value.exit_code == 3
    return list(info.value.problems)


def test_a_user_who_does_not_hold_what_cluster_roles_and_bound_roles_grant_is_refused(
        cgrants_sim: SimulatedClusters, tmp_path: Path, dynamic_client: Any) -> None:
    before = _made(cgrants_sim)
    plan = write_plan(tmp_path, cgrants_sim, ["g-1"], itinerary=ITINERARY,
                      target_context="target-lacking", name="lacking")
    problems = _refused(plan, tmp_path)
    assert problems == [
        "target: missing permission: delete secrets (cluster-wide), which ClusterRole g-1-reader "
        "of state MakeGrants grants (a ClusterRole may grant only what its creator holds)",
        "target: missing permission: update subresources.kubevirt.io "
        "virtualmachineinstances/pause in namespace shop, which RoleBinding g-1-pause of state "
        f"MakeGrants grants by binding ClusterRole vmi-pauser {BINDING}",
        "target: missing permission: get secrets (cluster-wide), which ClusterRoleBinding "
        f"g-1-viewers of state MakeGrants grants by binding ClusterRole secret-viewer {BINDING}",
        "target: missing permission: list secrets (cluster-wide), which ClusterRoleBinding "
        f"g-1-viewers of state MakeGrants grants by binding ClusterRole secret-viewer {BINDING}",
    ]
    cli = subprocess.run([sys.executable, "-m", "statemachine", "validate", str(plan)],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 3, cli.stderr
    assert problems[0] in cli.stdout + cli.stderr
    # The rules that would close the gaps: cluster-wide ones in a ClusterRole.
    assert "# target cluster: ClusterRole" in cli.stdout + cli.stderr
    assert _made(cgrants_sim) == before  # nothing applied
    # What preflight foresaw is what the cluster answers: each object is refused.
    client = dynamic_client(cgrants_sim, "target", "lacking")
    rbac = "rbac.authorization.k8s.io/v1"
    subjects = [{"kind": "User", "name": "someone"}]
    attempts = [
        ("ClusterRole", None, {"rules": [{"apiGroups": [""], "resources": ["secrets"],
                                          "verbs": ["delete"]}]}),
        ("RoleBinding", "shop", {"roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                             "kind": "ClusterRole", "name": "vmi-pauser"},
                                 "subjects": subjects}),
        ("ClusterRoleBinding", None, {"roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                  "kind": "ClusterRole", "name": "secret-viewer"},
                                      "subjects": subjects}),
    ]
    for kind, ns, body in attempts:
        meta: dict[str, str] = {"name": "g-1-try"}
        if ns:
            meta["namespace"] = ns
        api = client.resources.get(api_version=rbac, kind=kind)
        with pytest.raises(dexc.ForbiddenError) as refused:
            api.create(body={"apiVersion": rbac, "kind": kind, "metadata": meta, **body},
                       **({"namespace": ns} if ns else {}))
        assert "is attempting to grant RBAC permissions not currently held" in refused.value.body
    assert _made(cgrants_sim) == before


def test_a_refused_read_of_a_bound_role_is_a_finding(cgrants_sim: SimulatedClusters,
                                                     tmp_path: Path) -> None:
    problems = _refused(write_plan(tmp_path, cgrants_sim, ["g-1"], itinerary=ITINERARY,
                                   target_context="target-noreader", name="noreader"), tmp_path)
    for role in ("vmi-pauser", "secret-viewer"):
        assert (f'clusterroles.rbac.authorization.k8s.io "{role}" is forbidden: User "noreader" '
                'cannot get resource "clusterroles" in API group "rbac.authorization.k8s.io" '
                "at the cluster scope") in problems
    # Preflight's own read is a need like the run's: listed with the rule that closes it.
    assert ("target: missing permission: get rbac.authorization.k8s.io/v1 ClusterRole "
            "(cluster-wide)") in problems
    assert not any("by binding" in p for p in problems)  # the roles were not read
    assert _made(cgrants_sim) == []


@pytest.mark.parametrize("user", ["holding", "binder"])
def test_a_user_who_holds_the_grants_or_may_escalate_and_bind_runs_and_the_cluster_agrees(
        cgrants_sim: SimulatedClusters, tmp_path: Path, user: str) -> None:
    plan = write_plan(tmp_path, cgrants_sim, ["g-1", "g-2"], itinerary=ITINERARY,
                      target_context=f"target-{user}", name=user)
    code, events = run_lib(plan, tmp_path / "state")
    assert code == 0, [e for e in events if e["event"] in ("vm_failed", "run_finished")][:2]
    assert _made(cgrants_sim) == [f"{kind} g-{i}-{suffix}" for kind, suffix in
                                  (("ClusterRole", "reader"), ("ClusterRoleBinding", "viewers"),
                                   ("RoleBinding", "pause")) for i in (1, 2)]
