"""Static checks of the names an itinerary uses (issue 15 item 5): a ``reads.X``, ``outputs.X``,
``values.X`` or ``params.X`` that is not declared is an error naming file:line, field, state and
the unknown name with a suggestion, in expressions, ``forEach``, template strings and template
files; ``smrun validate`` exits 2 with one line."""
from __future__ import annotations

from pathlib import Path

import pytest

from statemachine.cli import main
from statemachine.names import used_names
from tests.language.conftest import RESTART, write_flow

FLOW = RESTART.replace("  reads:\n", """\
  parameters:
    - {name: deadline, schema: {type: integer}, default: 60}
  values:
    volumes: "reads.sourceVM.spec.template.spec.volumes | default([])"
  reads:
""", 1).replace("""    - name: Completed
""", """    - name: Label
      cluster: source
      forEach: "values.volumes"
      actions:
        - patch:
            object: {apiVersion: kubevirt.io/v1, kind: VirtualMachine, namespace: "{{ vm.namespace }}", name: "{{ vm.name }}"}
            patch: {metadata: {labels: {volume: "{{ item.name }}"}}}
      outputs:
        labelledAt: "now()"
    - name: Completed
""")


def _validate(tmp_path: Path, flow: str, capsys: pytest.CaptureFixture[str],
              templates: dict[str, str] | None = None) -> list[str]:
    plan_path = write_flow(tmp_path, flow, templates=templates)
    code = main(["validate", "--offline", str(plan_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == (2 if err else 0), err
    return err


def test_the_flow_as_written_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _validate(tmp_path, FLOW, capsys) == []


@pytest.mark.parametrize("old, new, expected", [
    ('forEach: "values.volumes"', 'forEach: "reads.sourceVMM.spec.template.spec.volumes"',
     ":20: spec.states[1].forEach: unknown read reads.sourceVMM (did you mean 'sourceVM'?) in state 'Label'"),
    ('forEach: "values.volumes"', 'forEach: "values.volumez"',
     ":20: spec.states[1].forEach: unknown value values.volumez (did you mean 'volumes'?) in state 'Label'"),
    ('volume: "{{ item.name }}"', 'volume: "{{ params.dedline }}"',
     "spec.states[1].actions[0].patch.patch.metadata.labels.volume: unknown parameter params.dedline "
     "(did you mean 'deadline'?) in state 'Label'"),
    ('labelledAt: "now()"', 'labelledAt: "outputs.labeledAt"',
     "spec.states[1].outputs.labelledAt: unknown output outputs.labeledAt (did you mean 'labelledAt'?)"),
    ('volumes: "reads.sourceVM.spec', 'volumes: "reads.sourcevm.spec',
     "spec.values.volumes: unknown read reads.sourcevm (did you mean 'sourceVM'?)"),
])
def test_an_undeclared_name_is_one_line_with_a_suggestion(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, expected: str) -> None:
    assert old in FLOW
    err = _validate(tmp_path, FLOW.replace(old, new), capsys)
    assert len(err) == 1, err
    assert err[0].startswith(str(tmp_path / "flow.yaml") + ":") and expected in err[0], err


def test_a_template_file_that_reads_an_undeclared_name_is_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = ('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "{{ vm.name }}-report", namespace: x}\n'
              'data: {flow: "{{ reads.sourceVMM.metadata.name }}"}\n')
    err = _validate(tmp_path, FLOW, capsys, templates={"report.yaml.j2": report})
    assert len(err) == 1, err
    assert ("spec.states[0].actions[0].apply: template 'report.yaml.j2': unknown read "
            "reads.sourceVMM (did you mean 'sourceVM'?) in state 'Record'") in err[0]


def test_the_built_in_itineraries_pass(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parents[2]
    for name in ("cold", "warm", "live"):
        assert main(["validate", str(root / "itineraries" / f"{name}.yaml")]) == 0


def test_names_in_text_comments_and_other_objects_are_not_names() -> None:
    source = "# reads.nope\n{# outputs.nope #}{{ obj.values.x }}{{ reads['a'] }}{% if params.p %}{% endif %}"
    assert used_names(source, "template") == (("reads", "a"), ("params", "p"))
