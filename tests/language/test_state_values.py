"""Per-state named values (issue 15 item 3): ``values`` on a state, computed each time the state
is entered after the itinerary's values and the state's own reads, in order (a value may use the
earlier ones), read as ``values.NAME`` by that state's manifests, readiness and outputs only.
A state value used outside its state is a load error naming file:line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from statemachine.cli import main
from statemachine.itinerary import load_itinerary
from statemachine.plan import load_plan
from statemachine.providers import plan_with_itinerary
from statemachine.render import render_plan
from statemachine.sim.offline import seed_reads
from tests.conftest import run_kubectl
from tests.language.conftest import RESTART, write_flow

FLOW = RESTART.replace("  reads:\n", """\
  values:
    volumeCount: "reads.sourceVM.spec.template.spec.volumes | default([]) | length"
  reads:
""", 1).replace("""    - name: Record
      cluster: source
      actions:
        - apply: report.yaml.j2
""", """    - name: Record
      cluster: source
      reads:
        - {name: vmAgain, cluster: source, object: {apiVersion: kubevirt.io/v1, kind: VirtualMachine, name: "{{ vm.name }}", namespace: "{{ vm.namespace }}"}}
      values:
        runStrategy: "reads.vmAgain.spec.runStrategy | default('none')"
        summary: "values.runStrategy ~ '/' ~ values.volumeCount"
        reportName: "vm.name ~ '-report'"
      actions:
        - apply: report.yaml.j2
      readiness:
        object: {apiVersion: v1, kind: ConfigMap, namespace: "{{ vm.namespace }}", name: "{{ values.reportName }}"}
        ready: "object.data.summary == values.summary"
      outputs:
        summary: "values.summary ~ ' (' ~ object.metadata.name ~ ')'"
    - name: Echo
      cluster: source
      actions:
        - apply: echo.yaml.j2
""")

TEMPLATES = {
    "report.yaml.j2": """\
apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ values.reportName }}", namespace: "{{ vm.namespace }}"}
data: {summary: "{{ values.summary }}"}
""",
    "echo.yaml.j2": """\
apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ vm.name }}-echo", namespace: "{{ vm.namespace }}"}
data: {summary: "{{ outputs.summary }}", count: "{{ values.volumeCount }}"}
""",
}


def _expected(plan_path: Path) -> str:
    plan, _ = plan_with_itinerary(load_plan(plan_path))
    vm = seed_reads(plan).get("source", "kubevirt.io/v1", "VirtualMachine", "shop", "web-1")
    assert vm is not None
    return f"{vm['spec'].get('runStrategy', 'none')}/{len(vm['spec']['template']['spec']['volumes'])}"


def test_state_values_load_in_order_as_a_frozen_mapping(tmp_path: Path) -> None:
    write_flow(tmp_path, FLOW, templates=TEMPLATES)
    state = load_itinerary(tmp_path / "flow.yaml").state("Record")
    assert list(state.values) == ["runStrategy", "summary", "reportName"]
    with pytest.raises(TypeError):
        state.values["x"] = "1"  # type: ignore[index]


def test_render_shows_a_state_value_in_that_states_manifest(tmp_path: Path) -> None:
    plan_path = write_flow(tmp_path, FLOW, templates=TEMPLATES)
    plan, itinerary = plan_with_itinerary(load_plan(plan_path))
    manifests = render_plan(plan, itinerary, seed_reads(plan))
    report = next(m.manifest for m in manifests if m.state == "Record")
    assert report["metadata"]["name"] == "web-1-report"
    assert report["data"]["summary"] == _expected(plan_path)


def test_the_engine_computes_state_values_for_manifests_readiness_and_outputs(
        tmp_path: Path, make_sim: Any) -> None:
    """``smrun run`` against the simulator (kubeconfig, real clients): the report's name and
    summary come from the state's values, its readiness compares with one, its output carries
    one to the next state; read back with kubectl."""
    plan_path = write_flow(tmp_path, FLOW, templates=TEMPLATES)
    expected = _expected(plan_path)
    sim = make_sim(seed=tmp_path / "seed.yaml")
    plan_path.write_text(plan_path.read_text().replace(
        "  simulation: {seed: ./seed.yaml}\n",
        f"  source: {{kubeconfig: {sim.kubeconfig_path}, context: source}}\n"
        f"  target: {{kubeconfig: {sim.kubeconfig_path}, context: target}}\n"))
    assert main(["run", str(plan_path), "--state-dir", str(tmp_path / "state")]) == 0

    def data(name: str) -> dict[str, str]:
        got = run_kubectl(sim, tmp_path / "kubectl-cache", "get", "configmap", name, "-n", "shop",
                          "-o", "json", context="source")
        out: dict[str, str] = json.loads(got.stdout)["data"]
        return out

    assert data("web-1-report") == {"summary": expected}
    echo = data("web-1-echo")
    assert echo["summary"] == f"{expected} (web-1-report)"
    assert echo["count"] == expected.split("/")[1]


@pytest.mark.parametrize("old, new, message", [
    # a state value read by another state's template
    ('data: {summary: "{{ outputs.summary }}", ',
     'data: {summary: "{{ values.summary }}", ',
     "spec.states[1].actions[0].apply: template 'echo.yaml.j2': unknown value values.summary"),
    # ... and by another state's expression
    ("        - apply: echo.yaml.j2\n", "        - apply: echo.yaml.j2\n          when: \"values.runStrategy\"\n",
     "spec.states[1].actions[0].when: unknown value values.runStrategy"),
    # a value may use only the ones before it
    ('runStrategy: "reads.vmAgain.spec.runStrategy', 'runStrategy: "values.reportName ~ reads.vmAgain.spec.runStrategy',
     "spec.states[0].values.runStrategy: unknown value values.reportName"),
    # the same name as an itinerary value would shadow it
    ("reportName: \"vm.name ~ '-report'\"", "reportName: \"vm.name ~ '-report'\"\n        volumeCount: \"1\"",
     "spec.states[0].values.volumeCount: value 'volumeCount' is already defined in spec.values"),
])
def test_a_state_value_outside_its_state_is_a_load_error_with_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, message: str) -> None:
    flow, templates = FLOW, dict(TEMPLATES)
    if old in flow:
        flow = flow.replace(old, new)
    else:
        assert old in templates["echo.yaml.j2"]
        templates["echo.yaml.j2"] = templates["echo.yaml.j2"].replace(old, new)
    plan_path = write_flow(tmp_path, flow, templates=templates)
    assert main(["validate", "--offline", str(plan_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"{tmp_path / 'flow.yaml'}:") and message in err[0], err
    if "states[1]" in message:
        assert "it is a value of state 'Record', visible only there" in err[0]


def test_itineraries_show_lists_state_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_flow(tmp_path, FLOW, templates=TEMPLATES)
    assert main(["itineraries", "show", str(tmp_path / "flow.yaml")]) == 0
    out = capsys.readouterr().out
    assert "# values of state Record (there only): runStrategy, summary, reportName" in out
