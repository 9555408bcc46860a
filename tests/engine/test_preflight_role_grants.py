"""Preflight requires of the runner what the Roles its run creates grant (Kubernetes' escalation
check, which the simulated clusters enforce as a real one does): a user who may write Roles but
does not hold their permissions is refused with exit 3 before anything is applied; a user who
holds them runs to the end, and the simulator accepts the Role."""
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

ITINERARY = DATA / "itinerary-role-grants.yaml"
WHY = "which Role {vm}-grants of state MakeRole grants (a Role may grant only what its creator holds)"


@pytest.fixture
def grants_sim(tmp_path: Path) -> Iterator[SimulatedClusters]:
    with SimulatedClusters(seed=DATA / "seed-grants.yaml", tick=0.02,
                           kubeconfig_out=tmp_path / "kubeconfig") as sim:
        yield sim


def _roles(sim: SimulatedClusters) -> list[str]:
    return sorted(r["metadata"]["name"] for r in sim.store("target").list("Role", "shop"))


def test_a_user_who_does_not_hold_what_the_role_grants_is_refused_before_anything_is_applied(
        grants_sim: SimulatedClusters, tmp_path: Path, dynamic_client: Any) -> None:
    plan = load_plan(write_plan(tmp_path, grants_sim, ["g-1", "g-2"], itinerary=ITINERARY,
                                target_context="target-granter", name="grants"))
    itinerary = load_itinerary(plan.itinerary)
    before = _roles(grants_sim)
    expected = [f"target: missing permission: {what} in namespace shop, {WHY.format(vm=vm)}"
                for vm in ("g-1", "g-2")
                for what in ("delete secrets",
                             "update subresources.kubevirt.io virtualmachineinstances/pause "
                             f"named {vm}")]
    for call in (lambda: commands.preflight(plan, itinerary, stream=io.StringIO()),
                 lambda: commands.run(plan, itinerary, state_dir=tmp_path / "state",
                                      output="json", stream=io.StringIO())):
        with pytest.raises(PreflightError) as info:
            call()
        assert info.value.exit_code == 3
        assert list(info.value.problems) == expected
    cli = subprocess.run([sys.executable, "-m", "statemachine", "run", str(plan.path),
                          "--state-dir", str(tmp_path / "cli-state")],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 3, cli.stderr
    assert expected[0] in cli.stdout + cli.stderr
    # Role rules that would close the gap are suggested, as for the other missing permissions.
    assert 'resources: ["virtualmachineinstances/pause"]' in cli.stdout + cli.stderr
    assert _roles(grants_sim) == before  # nothing applied
    # What preflight foresaw is what the cluster answers.
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "g-1-grants", "namespace": "shop"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["delete"]}]}
    roles = dynamic_client(grants_sim, "target", "granter").resources.get(
        api_version="rbac.authorization.k8s.io/v1", kind="Role")
    with pytest.raises(dexc.ForbiddenError) as refused:
        roles.create(body=role, namespace="shop")
    assert "is attempting to grant RBAC permissions not currently held" in refused.value.body


def test_a_user_who_holds_what_the_role_grants_runs_and_the_cluster_agrees(
        grants_sim: SimulatedClusters, tmp_path: Path) -> None:
    plan = write_plan(tmp_path, grants_sim, ["g-1"], itinerary=ITINERARY,
                      target_context="target-holder", name="held")
    code, events = run_lib(plan, tmp_path / "state")
    assert code == 0, [e for e in events if e["event"] == "vm_failed"][:1]
    assert "g-1-grants" in _roles(grants_sim)
    binding = grants_sim.store("target").get("RoleBinding", "shop", "g-1-grants")
    assert binding["roleRef"]["name"] == "g-1-grants"
