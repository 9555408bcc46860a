"""Parameters and named values (issue 15 items 2 and 3): ``spec.parameters`` declared by an
itinerary and set by a plan (``params.NAME``), ``spec.values`` computed once per VM after the
reads (``values.NAME``). Bad input: one ``file:line: field`` line, exit 2, nothing rendered."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from statemachine.cli import main
from statemachine.plan import load_plan
from statemachine.providers import plan_with_itinerary
from statemachine.render import render_plan
from statemachine.sim.offline import seed_reads
from tests.conftest import run_kubectl
from tests.language.conftest import RESTART, write_flow

PARAMS = RESTART.replace("  reads:\n", """\
  parameters:
    - name: deadline
      description: seconds the restart may take
      schema: {type: integer, minimum: 1}
      default: 600
    - name: label
      schema: {type: string, pattern: "^[a-z]+$"}
  values:
    volumes: "reads.sourceVM.spec.template.spec.volumes | default([])"
    volumeNames: "values.volumes | map(attribute='name') | list"
    count: "values.volumeNames | length"
  reads:
""", 1)

REPORT = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ vm.name }}-report", namespace: "{{ vm.namespace }}"}
data:
  deadline: "{{ params.deadline }}"
  label: "{{ params.label }}"
  volumes: "{{ values.volumeNames | join(',') }}"
  count: "{{ values.count }}"
"""


def _render(plan_path: Path) -> dict[str, str]:
    plan, itinerary = plan_with_itinerary(load_plan(plan_path))
    manifests = render_plan(plan, itinerary, seed_reads(plan))
    assert len(manifests) == 1
    data: dict[str, str] = manifests[0].manifest["data"]
    return data


def test_parameters_take_the_plans_values_and_the_defaults(tmp_path: Path) -> None:
    plan_path = write_flow(tmp_path, PARAMS, templates={"report.yaml.j2": REPORT},
                           extra_spec="parameters: {label: nightly}\n")
    data = _render(plan_path)
    assert data["deadline"] == "600" and data["label"] == "nightly"
    plan_path = write_flow(tmp_path, PARAMS, templates={"report.yaml.j2": REPORT},
                           extra_spec="parameters: {label: nightly, deadline: 30}\n")
    assert _render(plan_path)["deadline"] == "30"


def test_values_are_computed_in_order_over_the_reads(tmp_path: Path) -> None:
    plan_path = write_flow(tmp_path, PARAMS, templates={"report.yaml.j2": REPORT},
                           extra_spec="parameters: {label: nightly}\n")
    plan, itinerary = plan_with_itinerary(load_plan(plan_path))
    seed = seed_reads(plan)
    vm = seed.get("source", "kubevirt.io/v1", "VirtualMachine", "shop", "web-1")
    assert vm is not None
    names = [v["name"] for v in vm["spec"]["template"]["spec"]["volumes"]]
    data = _render(plan_path)
    assert data["volumes"] == ",".join(names) and data["count"] == str(len(names)) and names


@pytest.mark.parametrize("extra, line, message", [
    ("parameters: {label: nightly, deadlin: 30}\n", 7,
     "spec.parameters.deadlin: unknown parameter 'deadlin' (did you mean 'deadline'?)"),
    ("parameters: {label: nightly, deadline: soon}\n", 7,
     "spec.parameters.deadline: 'soon' is not of type 'integer'"),
    ("parameters: {label: Nightly}\n", 7, "spec.parameters.label: 'Nightly' does not match"),
    ("settings: {}\n", None, "parameter 'label' is required by itinerary 'restart'"),
])
def test_bad_parameters_are_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                extra: str, line: int | None, message: str) -> None:
    plan_path = write_flow(tmp_path, PARAMS, templates={"report.yaml.j2": REPORT}, extra_spec=extra)
    assert main(["validate", "--offline", str(plan_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert message in err[0] and err[0].startswith(str(plan_path))
    if line is not None:
        assert err[0].startswith(f"{plan_path}:{line}: ")
    assert main(["render", str(plan_path)]) == 2  # nothing rendered either
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("old, new, where", [
    ("default: 600", "default: -5", "spec.parameters[0].default: does not match the schema"),
    ("schema: {type: integer, minimum: 1}", "schema: {type: integr}",
     "spec.parameters[0].schema: not a valid JSON Schema"),
    ('count: "values.volumeNames | length"', 'count: "values.volumeNames | length("',
     "spec.values.count"),
])
def test_bad_declarations_are_refused_naming_the_itinerary_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, where: str) -> None:
    assert old in PARAMS
    plan_path = write_flow(tmp_path, PARAMS.replace(old, new), templates={"report.yaml.j2": REPORT},
                           extra_spec="parameters: {label: nightly}\n")
    assert main(["validate", "--offline", str(plan_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "flow.yaml") in err[0] and where in err[0], err


def test_a_plan_parameter_name_must_be_an_identifier(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = write_flow(tmp_path, PARAMS, templates={"report.yaml.j2": REPORT},
                           extra_spec="parameters: {label: nightly, dead-line: 3}\n")
    assert main(["validate", "--offline", str(plan_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{plan_path}:7: spec.parameters" in err[0], err


def test_the_engine_runs_with_parameters_and_values_on_the_simulated_clusters(
        tmp_path: Path, make_sim: Any) -> None:
    """``smrun run`` against the simulator (kubeconfig, real clients): the ConfigMap the flow
    writes carries the parameter and the values, read back with kubectl."""
    plan_path = write_flow(tmp_path, PARAMS, templates={"report.yaml.j2": REPORT},
                           extra_spec="parameters: {label: nightly, deadline: 42}\n")
    sim = make_sim(seed=tmp_path / "seed.yaml")
    text = plan_path.read_text().replace(
        "  simulation: {seed: ./seed.yaml}\n",
        f"  source: {{kubeconfig: {sim.kubeconfig_path}, context: source}}\n"
        f"  target: {{kubeconfig: {sim.kubeconfig_path}, context: target}}\n")
    plan_path.write_text(text)
    assert main(["run", str(plan_path), "--state-dir", str(tmp_path / "state")]) == 0
    got = run_kubectl(sim, tmp_path / "kubectl-cache", "get", "configmap", "web-1-report", "-n", "shop",
                      "-o", "json", context="source")
    data = json.loads(got.stdout)["data"]
    assert data["deadline"] == "42" and data["label"] == "nightly"
    assert int(data["count"]) == len(data["volumes"].split(",")) > 0


def test_a_reads_for_each_may_use_a_value_over_the_reads_before_it(tmp_path: Path) -> None:
    flow = PARAMS.replace("  states:\n", """\
    - name: claims
      cluster: source
      optional: true
      forEach: "values.volumes | selectattr('dataVolume', 'defined') | map(attribute='dataVolume.name') | list"
      object: {apiVersion: v1, kind: PersistentVolumeClaim, namespace: "{{ vm.namespace }}", name: "{{ item }}"}
  states:
""", 1)
    report = REPORT + '  claims: "{{ reads.claims | map(attribute=\'metadata.name\') | join(\',\') }}"\n'
    plan_path = write_flow(tmp_path, flow, templates={"report.yaml.j2": report},
                           extra_spec="parameters: {label: nightly}\n")
    plan, itinerary = plan_with_itinerary(load_plan(plan_path))
    vm = seed_reads(plan).get("source", "kubevirt.io/v1", "VirtualMachine", "shop", "web-1")
    assert vm is not None
    claims = [v["dataVolume"]["name"] for v in vm["spec"]["template"]["spec"]["volumes"]
              if "dataVolume" in v]
    assert claims and _render(plan_path)["claims"] == ",".join(claims)


def test_the_live_itinerary_names_its_filter_chains_once() -> None:
    from statemachine.itinerary import load_itinerary

    live = load_itinerary("live")
    text = "".join(f.read_text() for f in (live.file, *live.includes))  # with its fragments
    assert {"volumes", "dataVolumeNames", "claimNames", "secretNames"} <= set(live.values)
    assert text.count("reads.sourceVM.spec.template.spec.volumes") == 1
    assert text.count("selectattr('dataVolume.name', 'defined')") == 1
