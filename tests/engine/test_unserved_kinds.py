"""A kind a cluster does not serve (issue 15 item 5): preflight reports it as exactly one line
naming the cluster, the apiVersion/kind and the itinerary's file:line, with no "missing
permission" lines and no Role rules for a resource that does not exist (exit 3, nothing applied).
Against the simulated clusters over HTTPS: a typo in a template's kind for a user whose Role
grants exactly the real kinds, CDI removed from the target with kubectl, a typo in a read."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from statemachine.cli import main
from statemachine.sim.cluster import SimulatedClusters
from tests.conftest import KUBECTL, run_kubectl
from tests.engine.test_e2e import DATA, write_plan
from tests.language.conftest import REPORT, RESTART, write_flow

ROOT = Path(__file__).resolve().parents[2]

# The engine tests' target, plus a user "migrator" allowed exactly what the engine test itinerary
# needs (ConfigMaps, Jobs, Events in shop): a kind typo must not turn into permission findings.
MIGRATOR = """
  - apiVersion: rbac.authorization.k8s.io/v1
    kind: Role
    metadata: {name: migrator, namespace: shop}
    rules:
      - {apiGroups: ["", "batch"], resources: [configmaps, jobs, events], verbs: ["*"]}
  - apiVersion: rbac.authorization.k8s.io/v1
    kind: RoleBinding
    metadata: {name: migrator, namespace: shop}
    roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: migrator}
    subjects: [{kind: User, name: migrator}]
"""


def _findings(err: str) -> list[str]:
    lines = err.strip().splitlines()
    assert lines[0] == "preflight refused the plan; nothing was applied", lines
    return [line for line in lines[1:]]


def _engine_copy(folder: Path) -> Path:
    shutil.copytree(DATA, folder)
    (folder / "seed.yaml").write_text((DATA / "seed.yaml").read_text() + MIGRATOR)
    return folder


def test_a_template_kind_typo_is_one_line_without_permission_noise(
        tmp_path: Path, make_sim: Callable[..., SimulatedClusters],
        capsys: pytest.CaptureFixture[str]) -> None:
    good, typo = _engine_copy(tmp_path / "good"), _engine_copy(tmp_path / "typo")
    sim = make_sim(seed=good / "seed.yaml", tick=0.02)
    # The user's Role is enough for the itinerary as written...
    plan = write_plan(tmp_path, sim, ["web-1"], itinerary=good / "itinerary.yaml",
                      target_context="target-migrator", name="good")
    assert main(["validate", str(plan)]) == 0, capsys.readouterr()
    capsys.readouterr()
    # ...and a typo in one template's kind is that one finding.
    template = typo / "templates" / "config.yaml.j2"
    template.write_text(template.read_text().replace("kind: ConfigMap", "kind: ConfigMaps"))
    itinerary = typo / "itinerary.yaml"
    plan = write_plan(tmp_path, sim, ["web-1"], itinerary=itinerary, target_context="target-migrator")
    assert main(["validate", str(plan)]) == 3
    err = capsys.readouterr().err
    assert _findings(err) == [f"  - {itinerary}:15: spec.states[0].actions[0].apply: the target "
                              "cluster does not serve v1 ConfigMaps (did you mean 'ConfigMap'?)"]
    assert "missing permission" not in err and "Role rules" not in err
    # `smrun run` refuses the same way before anything is applied.
    assert main(["run", str(plan), "--state-dir", str(tmp_path / "state")]) == 3
    assert "does not serve v1 ConfigMaps" in capsys.readouterr().err
    assert sim.store("target").list("ConfigMap", "shop", label_selector="smrun.io/plan=e2e") == []


def test_cdi_not_installed_is_one_line_naming_the_itinerary_and_the_missing_api(
        tmp_path: Path, make_sim: Callable[..., SimulatedClusters],
        capsys: pytest.CaptureFixture[str]) -> None:
    if not Path(KUBECTL).exists():
        pytest.skip("kubectl is not installed (.ci/run installs it)")
    example = ROOT / "examples" / "live"
    sim = make_sim(seed=example / "seed.yaml", tick=0.02)
    cache = tmp_path / "kubectl-cache"
    crds = run_kubectl(sim, cache, "get", "crd", "-o", "name", context="target").stdout.split()
    cdi = [name for name in crds if name.endswith(".cdi.kubevirt.io")]
    assert "customresourcedefinition.apiextensions.k8s.io/datavolumes.cdi.kubevirt.io" in cdi
    run_kubectl(sim, cache, "delete", *cdi, context="target")
    gone = run_kubectl(sim, cache, "get", "datavolumes", "-A", context="target", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    plan = tmp_path / "plan.yaml"
    shutil.copytree(example / "hooks", tmp_path / "hooks")
    plan.write_text((example / "plan.yaml").read_text().replace(
        "  simulation:\n    seed: ./seed.yaml\n",
        f"  source: {{kubeconfig: {sim.kubeconfig_path}, context: source}}\n"
        f"  target: {{kubeconfig: {sim.kubeconfig_path}, context: target}}\n"))
    assert main(["validate", str(plan)]) == 3
    err = capsys.readouterr().err
    findings = _findings(err)
    assert len(findings) == 1, findings
    assert findings[0].startswith(f"  - {ROOT / 'itineraries' / 'live.yaml'}:")
    assert findings[0].endswith(": the target cluster does not serve cdi.kubevirt.io/v1beta1 DataVolume "
                                "(it serves no cdi.kubevirt.io/v1beta1 kinds: is that API installed?)")
    assert "missing permission" not in err and "Role rules" not in err


def test_a_read_kind_typo_is_one_line_offline_and_on_the_simulated_clusters(
        tmp_path: Path, make_sim: Callable[..., SimulatedClusters],
        capsys: pytest.CaptureFixture[str]) -> None:
    flow = RESTART.replace("kind: VirtualMachine, name:", "kind: VirtualMachinees, name:", 1)
    plan = write_flow(tmp_path, flow)
    line = (f"{tmp_path / 'flow.yaml'}:8: spec.reads[0].object: the simulated source cluster does "
            "not serve kubevirt.io/v1 VirtualMachinees (did you mean 'VirtualMachine'?)")
    # Offline: a simulated plan's clusters are known without starting them (exit 2, one line).
    assert main(["validate", "--offline", str(plan)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [line]
    # Started: the same plan's clusters as a kubeconfig plan, preflight over HTTPS (exit 3).
    sim = make_sim(seed=tmp_path / "seed.yaml", tick=0.02)
    live = tmp_path / "live.yaml"
    live.write_text(plan.read_text().replace(
        "  simulation: {seed: ./seed.yaml}\n",
        f"  source: {{kubeconfig: {sim.kubeconfig_path}, context: source}}\n"
        f"  target: {{kubeconfig: {sim.kubeconfig_path}, context: target}}\n"))
    assert main(["validate", str(live)]) == 3
    assert _findings(capsys.readouterr().err) == ["  - " + line.replace("simulated ", "")]


def test_a_template_kind_typo_of_a_simulated_plan_is_found_offline(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_flow(tmp_path, templates={"report.yaml.j2": REPORT.replace(
        "kind: ConfigMap", "kind: ConfigMapp")})
    assert main(["validate", "--offline", str(plan)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{tmp_path / 'flow.yaml'}:13: spec.states[0].actions[0].apply: the simulated source "
        "cluster does not serve v1 ConfigMapp (did you mean 'ConfigMap'?)"]
