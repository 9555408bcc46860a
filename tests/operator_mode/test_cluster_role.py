"""The operator's ClusterRole covers every state of every installed itinerary (issue 12, item 8).

`smrun operator manifests` derives the role with ``preflight.itinerary_needs``: every state as if
all predicates were true, actions and undo, reads, readiness objects and the commit, with the
kinds a template creates read from its text. These tests check that states no example plan
enables are in it, that an itinerary a provider installs is in it, that it is still least
privilege (no wildcard; only what some state can do) and that a template whose kind is computed
is refused rather than guessed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine.engine.preflight import (itinerary_needs, itinerary_role_grants, plan_needs,
                                          resource_verbs)
from statemachine.itinerary import load_itinerary
from statemachine.operator.manifests import OPERATOR_RULES, manifests
from statemachine.plan import load_plan
from statemachine.providers import itinerary_for_plan
from statemachine.sim.offline import seed_reads

REPO = Path(__file__).resolve().parents[2]

# A provider's itinerary: its only apply is in an optional state (no plan here enables it), and
# a kind it only deletes on undo. Neither kind is used by a built-in itinerary.
ITINERARY = """\
apiVersion: smrun.io/v1alpha1
kind: Itinerary
metadata: {name: fence-off}
spec:
  migrationType: fence-off
  templates: templates
  predicates:
    Fenced: "settings.fence | default(false)"
  states:
    - name: Fence
      when: {all: [Fenced]}
      cluster: target
      actions:
        - apply: policy.yaml.j2
      undo:
        - delete: {apiVersion: apps/v1, kind: StatefulSet, namespace: "{{ vm.namespace }}",
                   name: "{{ vm.name }}-guard"}
    - name: Completed
"""

TEMPLATE = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ vm.name | tojson }}
  namespace: {{ vm.namespace | tojson }}
spec: {podSelector: {}}
"""

PROVIDER = '''\
"""A test provider that installs the fence-off itinerary."""
from pathlib import Path


class Provider:
    def supports_path(self, path):
        return False

    def itinerary(self, path):
        raise LookupError(path)

    def itineraries(self):
        return {"fence-off": Path(__file__).parent / "flows" / "fence-off.yaml"}
'''


def _install(site: Path, template: str = TEMPLATE) -> None:
    """Distribution smrun-fence (entry point ``fence`` in ``smrun.providers``) into ``site``, as
    pip would lay it out (tests/test_installed_itineraries.py does the same)."""
    flows = site / "smrun_fence" / "flows"
    (flows / "templates").mkdir(parents=True)
    (site / "smrun_fence" / "__init__.py").write_text(PROVIDER)
    (flows / "fence-off.yaml").write_text(ITINERARY)
    (flows / "templates" / "policy.yaml.j2").write_text(template)
    info = site / "smrun_fence-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: smrun-fence\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[smrun.providers]\nfence = smrun_fence:Provider\n")


def _printed(site: Path | None = None) -> tuple[int, str, str]:
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    proc = subprocess.run([sys.executable, "-m", "statemachine", "operator", "manifests"],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def _granted(docs: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    role = next(d for d in docs if d and d["kind"] == "ClusterRole")
    assert all(len(r["apiGroups"]) == 1 and len(r["resources"]) == 1 for r in role["rules"])
    return {(r["apiGroups"][0], r["resources"][0]): set(r["verbs"]) for r in role["rules"]}


def _no_wildcards(docs: list[dict[str, Any]]) -> None:
    role = next(d for d in docs if d and d["kind"] == "ClusterRole")
    for rule in role["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert all("*" not in resource for resource in rule["resources"]), rule


@pytest.mark.parametrize(("itinerary", "resource", "verbs", "state"), [
    # live: the Submariner ServiceExports (settings.submariner; the example does not set it)
    ("live", ("multicluster.x-k8s.io", "serviceexports"), {"create", "delete"},
     "CreateServiceExports"),
    # warm: the `pause` cutover's Job runs with its own ServiceAccount and Role
    ("warm", ("rbac.authorization.k8s.io", "roles"), {"create", "delete"}, "PauseSource"),
    ("warm", ("", "serviceaccounts"), {"create", "delete"}, "PauseSource"),
    # every built-in: a namespaced VirtualMachinePreference is copied (no example has one)
    ("cold", ("instancetype.kubevirt.io", "virtualmachinepreferences"), {"create"},
     "EnsureResources"),
])
def test_a_state_no_example_enables_is_in_the_role(itinerary: str, resource: tuple[str, str],
                                                    verbs: set[str], state: str) -> None:
    """The kind of a state the example plan leaves off is granted: the example's own rendering
    (what the role was derived from before) does not need it, the role grants it."""
    flow = load_itinerary(itinerary)
    assert any(s.name == state for s in flow.states), state
    plan = load_plan(REPO / "examples" / itinerary / "plan.yaml")
    rendered = resource_verbs(plan_needs(plan, itinerary_for_plan(plan), seed_reads(plan)))
    assert not verbs <= rendered.get(resource, set()), "the example enables it: pick another"
    assert verbs <= resource_verbs(itinerary_needs(flow))[resource]
    assert verbs <= _granted(manifests())[resource]


@pytest.mark.parametrize("kind", ["cold", "warm", "live"])
def test_the_role_is_what_some_state_can_do_and_no_more(kind: str) -> None:
    """Least privilege: every grant is the operator's own or comes from some state of an
    installed itinerary, verb for verb; and the example plan's run (rendered, as preflight
    derives it) needs nothing the role lacks."""
    granted = _granted(manifests())
    derived: dict[tuple[str, str], set[str]] = {}
    for name in ("cold", "warm", "live"):
        flow = load_itinerary(name)
        for part in (resource_verbs(itinerary_needs(flow)), itinerary_role_grants(flow)):
            for key, verbs in part.items():
                derived.setdefault(key, set()).update(verbs)
    for group, resource, verbs in OPERATOR_RULES:
        derived.setdefault((group, resource), set()).update(verbs)
    assert granted == derived
    plan = load_plan(REPO / "examples" / kind / "plan.yaml")
    for resource, verbs in resource_verbs(plan_needs(plan, itinerary_for_plan(plan),
                                                     seed_reads(plan))).items():
        assert verbs <= granted[resource], (resource, verbs)
    assert ("", "pods") not in granted and ("", "nodes") not in granted
    _no_wildcards(manifests())


def test_a_provider_installed_itinerary_is_in_the_role(tmp_path: Path) -> None:
    """An itinerary a provider installs adds its kinds: the optional state's apply and the undo's
    delete; nothing else changes and there is still no wildcard."""
    code, before, err = _printed()
    assert code == 0, err
    _install(tmp_path)
    code, after, err = _printed(tmp_path)
    assert code == 0, err
    docs = [d for d in yaml.safe_load_all(after) if d]
    granted = _granted(docs)
    assert granted[("networking.k8s.io", "networkpolicies")] == {"create", "get", "list", "watch"}
    assert granted[("apps", "statefulsets")] == {"delete", "get", "list", "watch"}
    without = _granted([d for d in yaml.safe_load_all(before) if d])
    assert {k: v for k, v in granted.items()
            if k not in (("networking.k8s.io", "networkpolicies"), ("apps", "statefulsets"))} \
        == without
    _no_wildcards(docs)


def test_a_computed_kind_is_refused_not_guessed(tmp_path: Path) -> None:
    """A template whose kind is an expression cannot be derived: one line naming the template
    file and line, exit 2, no install printed (never a wildcard or a guess)."""
    _install(tmp_path, TEMPLATE.replace("kind: NetworkPolicy",
                                        "kind: {{ 'NetworkPolicy' if vm.name else 'Secret' }}"))
    code, out, err = _printed(tmp_path)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert f"{tmp_path / 'smrun_fence' / 'flows' / 'templates' / 'policy.yaml.j2'}:2: kind" \
        in lines[0] and "is an expression" in lines[0]


def test_the_role_holds_what_the_roles_its_states_create_grant() -> None:
    """Kubernetes lets a subject create a Role only if it holds every permission the Role
    grants: the warm `pause` cutover creates a Role allowing `update` on one VMI's `pause`
    subresource, so the operator's role has that grant (for every VMI: the names differ per VM),
    and nothing else of that API group."""
    granted = _granted(manifests())
    assert granted[("subresources.kubevirt.io", "virtualmachineinstances/pause")] == {"update"}
    assert [k for k in granted if k[0] == "subresources.kubevirt.io"] == \
        [("subresources.kubevirt.io", "virtualmachineinstances/pause")]


@pytest.mark.slow
@pytest.mark.parametrize("drop", [None, ("kubevirt.io", "virtualmachineinstancemigrations")])
def test_the_derived_role_is_enough_for_a_live_migration(tmp_path: Path,
                                                         drop: tuple[str, str] | None) -> None:
    """Least privilege that still works: the operator authenticates as its ServiceAccount, bound
    to the printed ClusterRole, on both simulated clusters (which enforce RBAC), and runs the live
    example to the end. With one rule taken out of the role, preflight's RBAC check refuses the
    Plan and names it (so the clusters do enforce the role)."""
    pytest.importorskip("kopf")
    from tests.live.test_live_e2e import Reader, _assert_full_success
    from tests.operator_mode.test_operator_e2e import NS, Operator, plan_object
    from statemachine.operator.crd import plan_crd
    from statemachine.operator.manifests import DEFAULT_NAMESPACE, NAME
    from statemachine.sim.cluster import SimulatedClusters

    sim = SimulatedClusters(seed=REPO / "examples" / "live" / "seed.yaml", tick=0.02,
                            kubeconfig_out=tmp_path / "kubeconfig")
    sim.start()
    op = Operator(sim, tmp_path)
    try:
        install = [d for d in manifests() if d["kind"] not in ("Deployment", "PodDisruptionBudget")]
        role = next(d for d in install if d["kind"] == "ClusterRole")
        role["rules"] = [r for r in role["rules"]
                         if (r["apiGroups"][0], r["resources"][0]) != drop]
        tokens = {}
        for cluster in ("source", "target"):
            op.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(install), context=cluster)
            tokens[cluster] = op.kubectl("create", "token", NAME, "-n", DEFAULT_NAMESPACE,
                                         context=cluster).stdout.strip()
        op.kubectl("wait", "--for=condition=Established", "crd/plans.smrun.io", "--timeout=10s")
        assert plan_crd()["metadata"]["name"] == "plans.smrun.io"
        op.kubectl("create", "namespace", NS)
        admin = yaml.safe_load(sim.kubeconfig_path.read_text())
        clusters = {c["name"]: c for c in admin["clusters"]}
        contexts = {c["name"]: c["context"] for c in admin["contexts"]}
        as_operator = {
            "apiVersion": "v1", "kind": "Config", "current-context": "target",
            "clusters": [clusters[contexts[c]["cluster"]] for c in ("source", "target")],
            "users": [{"name": f"sa-{c}", "user": {"token": tokens[c]}} for c in tokens],
            "contexts": [{"name": c, "context": {"cluster": contexts[c]["cluster"],
                                                 "user": f"sa-{c}"}} for c in tokens]}
        kubeconfig = tmp_path / "operator.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(as_operator), encoding="utf-8")
        op.kubectl("create", "secret", "generic", "clusters", "-n", NS,
                   f"--from-file=kubeconfig={kubeconfig}")
        plan = plan_object(kubeconfig)
        plan["spec"]["source"] = {"kubeconfigSecret": {"name": "clusters", "context": "source"}}
        plan["spec"]["target"] = {"kubeconfigSecret": {"name": "clusters", "context": "target"}}
        op.apply(plan)
        log = open(tmp_path / "operator-sa.log", "w", encoding="utf-8")
        op.procs.append(subprocess.Popen(
            [sys.executable, "-m", "statemachine", "operator", "--kubeconfig", str(kubeconfig),
             "--context", "target", "--namespace", NS, "--id", "sa", "--state-dir",
             str(tmp_path / "state")], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path))
        status = op.wait_phase("live-demo", ("Succeeded", "Failed", "Invalid", "Refused"))["status"]
        if drop is None:
            assert status["phase"] == "Succeeded", status
            _assert_full_success(Reader.of_sim(sim))
        else:
            # Refused before anything is applied; preflight's first read of a migration is
            # what is forbidden (it stops there rather than listing the rules it lacks).
            assert status["phase"] == "Refused", status
            assert "virtualmachineinstancemigrations" in status["message"].lower(), status
            assert json.loads(op.kubectl("get", "vmim", "-A", "-o", "json",
                                         context="target").stdout)["items"] == []
    finally:
        op.stop()
        sim.stop()
