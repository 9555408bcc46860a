"""Static check of field paths below a read of a known kind (issue 15 item 5): a misspelt field
(``reads.sourceVM.spec.template.spec.volumez``, with or without ``| default([])``) is one line
naming file:line, field, state and the closest field of the kind's schema; ``smrun validate
--offline`` exits 2 and ``smrun run`` refuses before applying anything. Maps with free keys,
open objects, list indexing, filters, methods and loop variables are not flagged."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from statemachine.cli import main
from statemachine.fieldpaths import read_paths, unknown_fields
from tests.language.conftest import RESTART, write_flow

ROOT = Path(__file__).resolve().parents[2]
VM = ("kubevirt.io/v1", "VirtualMachine", False)

FLOW = RESTART.replace("""    - name: Completed
""", """    - name: Label
      cluster: source
      forEach: "reads.sourceVM.spec.template.spec.volumes | default([])"
      actions:
        - patch:
            object: {apiVersion: kubevirt.io/v1, kind: VirtualMachine, namespace: "{{ vm.namespace }}", name: "{{ vm.name }}"}
            patch: {metadata: {labels: {volume: "{{ item.name }}"}}}
    - name: Completed
""")


def _line(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def _validate(tmp_path: Path, flow: str, capsys: pytest.CaptureFixture[str],
              templates: dict[str, str] | None = None) -> tuple[int, list[str]]:
    plan = write_flow(tmp_path, flow, templates=templates)
    code = main(["validate", "--offline", str(plan)])
    return code, capsys.readouterr().err.strip().splitlines()


def test_the_flow_as_written_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _validate(tmp_path, FLOW, capsys) == (0, [])


@pytest.mark.parametrize("written", [
    "reads.sourceVM.spec.template.spec.volumez | default([])",
    "reads.sourceVM.spec.template.spec.volumez",
])
def test_a_misspelt_field_in_a_for_each_is_one_line_with_a_suggestion(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], written: str) -> None:
    flow = FLOW.replace("reads.sourceVM.spec.template.spec.volumes | default([])", written)
    assert _validate(tmp_path, flow, capsys) == (2, [
        f"{tmp_path / 'flow.yaml'}:{_line(flow, written)}: spec.states[1].forEach: unknown field "
        "reads.sourceVM.spec.template.spec.volumez: a kubevirt.io/v1 VirtualMachine's "
        "spec.template.spec has no field 'volumez' (did you mean 'volumes'?) in state 'Label'"])


def test_template_strings_and_template_files_are_checked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = FLOW.replace('volume: "{{ item.name }}"', 'volume: "{{ reads.sourceVM.spec.runStrategi }}"')
    report = ('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "{{ vm.name }}-report", namespace: x}\n'
              'data: {flow: "{{ reads.sourceVM.metadata.lables | tojson }}"}\n')
    code, err = _validate(tmp_path, flow, capsys, templates={"report.yaml.j2": report})
    assert code == 2
    assert err == [
        f"{tmp_path / 'flow.yaml'}:{_line(flow, 'apply: report')}: spec.states[0].actions[0].apply: template "
        "'report.yaml.j2': unknown field reads.sourceVM.metadata.lables: a kubevirt.io/v1 "
        "VirtualMachine's metadata has no field 'lables' (did you mean 'labels'?) in state 'Record'",
        f"{tmp_path / 'flow.yaml'}:{_line(flow, 'runStrategi')}: "
        "spec.states[1].actions[0].patch.patch.metadata.labels.volume: "
        "unknown field reads.sourceVM.spec.runStrategi: a kubevirt.io/v1 VirtualMachine's spec "
        "has no field 'runStrategi' (did you mean 'runStrategy'?) in state 'Label'"]


def test_a_state_read_and_a_list_read_are_checked_by_their_kind(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = FLOW.replace('''      forEach: "reads.sourceVM.spec.template.spec.volumes | default([])"''', '''\
      reads:
        - {name: disks, cluster: source, forEach: "['web-1-root']", optional: true, object: {apiVersion: cdi.kubevirt.io/v1beta1, kind: DataVolume, name: "{{ item }}", namespace: shop}}
      forEach: "reads.disks | reject('none') | map(attribute='spec') | list"
      values:
        first: "reads.disks[0].spec.sorce if reads.disks[0] else none"''')
    code, err = _validate(tmp_path, flow, capsys)
    assert (code, err) == (2, [
        f"{tmp_path / 'flow.yaml'}:{_line(flow, 'sorce')}: spec.states[1].values.first: unknown field "
        "reads.disks[0].spec.sorce: a cdi.kubevirt.io/v1beta1 DataVolume's spec has no field "
        "'sorce' (did you mean 'source'?) in state 'Label'"])


def test_run_refuses_before_applying_anything(tmp_path: Path) -> None:
    flow = FLOW.replace("spec.volumes |", "spec.volumez |")
    plan = write_flow(tmp_path, flow)
    state = tmp_path / "state"
    done = subprocess.run([sys.executable, "-m", "statemachine", "run", str(plan), "--state-dir",
                           str(state)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"{tmp_path / 'flow.yaml'}:{_line(flow, 'volumez')}: spec.states[1].forEach: unknown "
        "field reads.sourceVM.spec.template.spec.volumez: a kubevirt.io/v1 VirtualMachine's "
        "spec.template.spec has no field 'volumez' (did you mean 'volumes'?) in state 'Label'"]
    # Refused when the itinerary loaded: nothing journaled (so nothing applied), at most the lock.
    assert [p.name for p in state.rglob("*") if p.is_file()] in ([], ["lock"])


@pytest.mark.parametrize("source", [
    "reads.sourceVM.metadata.labels['kubevirt.io/os'] | default('')",   # a map: free keys
    "reads.sourceVM.metadata.annotations.anything",
    "reads.sourceVM.spec.template.metadata.whatever",                   # nested ObjectMeta: open
    "reads.sourceVM.spec.template.spec.domain.resources.requests.memory",  # a resource map
    "reads.sourceVM.spec.template.spec.volumes[0].dataVolume.name",     # list indexing
    "reads.sourceVM.spec.template.spec.volumes.items",                  # a name on a list
    "reads.sourceVM.spec.template.spec.items()",                        # a dict method
    "reads.sourceVM.spec.get('newerField')",                            # a method call
    "reads.sourceVM.spec[key].x",                                       # a computed subscript
    "reads.sourceVM.status.printableStatus == 'Running'",
    "reads.sourceVM.spec.template.spec.volumes | selectattr('dataVolumez', 'defined') | list",
    "reads.other.spec.anything",                                        # a kind not in the table
    "object.spec.volumez",                                              # not a read
])
def test_what_can_be_there_is_not_flagged(source: str) -> None:
    reads = {"sourceVM": VM, "other": ("v1", "Service", False)}
    assert unknown_fields(source, "expression", reads) == []


def test_loop_variables_in_templates_are_not_followed() -> None:
    source = ("{% for v in reads.sourceVM.spec.template.spec.volumes %}{{ v.dataVolumez }}"
              "{% endfor %}# reads.sourceVM.nope\n{# reads.sourceVM.nope #}")
    assert read_paths(source, "template") == (("sourceVM", ("spec", "template", "spec", "volumes")),)
    assert unknown_fields(source, "template", {"sourceVM": VM}) == []


def test_the_built_in_itineraries_and_the_examples_pass(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("cold", "warm", "live"):
        assert main(["validate", str(ROOT / "itineraries" / f"{name}.yaml")]) == 0
    for plan in sorted((ROOT / "examples").glob("*/plan.yaml")):
        assert main(["validate", "--offline", str(plan)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().err == ""


def test_an_exported_copy_with_a_misspelt_field_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["itineraries", "export", "live", str(tmp_path / "flow")]) == 0
    live = tmp_path / "flow" / "live.yaml"
    text = live.read_text()
    good = 'forEach: "reads.sourceVM.spec.template.spec.networks | default([])"'
    assert good in text
    live.write_text(text.replace(good, good.replace("networks", "networkz")))
    line = _line(live.read_text(), "networkz")
    shutil.copytree(ROOT / "examples" / "live", tmp_path / "example")
    plan = tmp_path / "example" / "plan.yaml"
    plan.write_text(plan.read_text().replace("  type: live\n", f"  itinerary: {live}\n"))
    capsys.readouterr()
    assert main(["validate", "--offline", str(plan)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{live}:{line}: spec.preflight[9].forEach: unknown field "
        "reads.sourceVM.spec.template.spec.networkz: a kubevirt.io/v1 VirtualMachine's "
        "spec.template.spec has no field 'networkz' (did you mean 'networks'?)"]


def test_the_shipped_field_table_is_the_generated_one() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_kind_fields
    finally:
        sys.path.pop(0)
    shipped = (ROOT / "statemachine" / "sim" / "data" / "kind-fields.json").read_text()
    assert shipped == gen_kind_fields.render(gen_kind_fields.generate())
    table = json.loads(shipped)["kinds"]
    spec = table["kubevirt.io/v1/VirtualMachine"]["p"]["spec"]["p"]["template"]["p"]["spec"]["p"]
    assert "volumes" in spec and spec["volumes"]["i"]["p"]["dataVolume"]["p"]["name"] == 0
    assert table["v1/ConfigMap"]["p"]["data"] == 0  # free keys
