"""A ``forEach`` whose value is undefined (a field that is not there) is an error naming the
state, the field and the closest key the object has, not a loop that silently runs zero times
(issue 15 item 5): in the engine (a state read at run time: the VM fails, exit 1), in preflight
(a check's forEach: exit 3, nothing applied) and in rendering (``smrun validate --offline``:
exit 2). ``| default([])`` is the author's explicit choice and loops zero times."""
from __future__ import annotations

from pathlib import Path

import pytest

from statemachine.cli import main
from tests.language.conftest import RESTART, write_flow

# A state that reads the ConfigMap the state before it made (so only the run can resolve it)
# and loops over a key its data does not have: ConfigMap data has free keys, so no schema can
# tell before the run.
USE = RESTART.replace("""    - name: Completed
""", """    - name: Use
      cluster: source
      reads:
        - {name: report, cluster: source, object: {apiVersion: v1, kind: ConfigMap, name: "{{ vm.name }}-report", namespace: "{{ vm.namespace }}"}}
      forEach: "reads.report.data.flows"
      actions:
        - patch:
            object: {apiVersion: kubevirt.io/v1, kind: VirtualMachine, namespace: "{{ vm.namespace }}", name: "{{ vm.name }}"}
            patch: {metadata: {labels: {flow: "{{ item }}"}}}
    - name: Completed
""")


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    out = capsys.readouterr()
    return (out.out + out.err).strip().splitlines()


def test_the_engine_fails_the_vm_naming_the_state_and_the_missing_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_flow(tmp_path, USE)
    assert main(["validate", "--offline", str(plan)]) == 0  # before the run the read is pending
    capsys.readouterr()
    assert main(["run", str(plan), "--state-dir", str(tmp_path / "state")]) == 1
    lines = _lines(capsys)
    assert (f"shop/web-1: Failed: {tmp_path / 'flow.yaml'}:14: spec.states[1].forEach: "
            "'reads.report.data.flows' is undefined: the object has no field 'flows' (did you "
            "mean 'flow'?) in state 'Use'") in lines, lines
    assert lines[-1] == "plan flow: finished: 0 completed, 1 failed, 0 canceled"


def test_a_default_is_the_authors_choice_and_loops_zero_times(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = write_flow(tmp_path, USE.replace('"reads.report.data.flows"',
                                            '"reads.report.data.flows | default([])"'))
    assert main(["run", str(plan), "--state-dir", str(tmp_path / "state")]) == 0
    lines = _lines(capsys)
    assert lines[-1] == "plan flow: finished: 1 completed, 0 failed, 0 canceled", lines


# Through a named value, whose fields no static check follows.
VALUES = RESTART.replace("  reads:\n", """\
  values:
    vmSpec: "reads.sourceVM.spec.template.spec"
  reads:
""", 1)


def test_rendering_refuses_a_state_for_each_over_a_missing_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = VALUES.replace("""    - name: Record
      cluster: source
""", """    - name: Record
      cluster: source
      forEach: "values.vmSpec.volumez"
""")
    plan = write_flow(tmp_path, flow)
    assert main(["validate", "--offline", str(plan)]) == 2
    assert _lines(capsys) == [
        f"{tmp_path / 'flow.yaml'}:12: spec.states[0].forEach: 'values.vmSpec.volumez' is "
        "undefined: the object has no field 'volumez' (did you mean 'volumes'?) in state 'Record'"]


def test_preflight_refuses_a_check_for_each_over_a_missing_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = VALUES.replace("  states:\n", """\
  preflight:
    - name: VolumesNamed
      forEach: "values.vmSpec.volumez"
      check: "item.name"
      message: "a volume without a name"
  states:
""", 1)
    plan = write_flow(tmp_path, flow)
    state = tmp_path / "state"
    assert main(["run", str(plan), "--state-dir", str(state)]) == 3
    lines = _lines(capsys)
    assert lines[-1] == (
        f"  - shop/web-1: {tmp_path / 'flow.yaml'}:12: spec.preflight[0].forEach: "
        "'values.vmSpec.volumez' is undefined: the object has no field 'volumez' (did you mean "
        "'volumes'?)"), lines
    assert "preflight refused the plan; nothing was applied" in lines


def test_an_absent_optional_read_says_so(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    flow = VALUES.replace("""  states:
    - name: Record
      cluster: source
""", """  states:
    - name: Record
      cluster: source
      reads:
        - {name: spare, optional: true, object: {apiVersion: v1, kind: ConfigMap, name: absent, namespace: shop}}
      forEach: "reads.spare.data"
""")
    plan = write_flow(tmp_path, flow)
    assert main(["validate", "--offline", str(plan)]) == 2
    assert _lines(capsys) == [
        f"{tmp_path / 'flow.yaml'}:12: spec.states[0].forEach: 'reads.spare.data' is undefined: "
        "no field 'data' in none (an absent optional read, or a field that is null) in state "
        "'Record'"]
