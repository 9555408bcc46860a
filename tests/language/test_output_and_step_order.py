"""Flow-order checks (issue 15 item 5): an output used by a state that can run before (or
without) the state that makes it is an error at file:line (``smrun validate`` and ``smrun run``
exit 2, nothing applied); a state's ``step`` out of ``spec.pipeline`` order is one warning line
with file:line, exit 0, and the flow still runs on the simulated clusters."""
from __future__ import annotations

from pathlib import Path

import pytest

from statemachine.cli import main
from tests.language.conftest import RESTART, write_flow

PATCH = """      actions:
        - patch:
            object: {apiVersion: kubevirt.io/v1, kind: VirtualMachine, namespace: "{{ vm.namespace }}", name: "{{ vm.name }}"}
            patch: {metadata: {labels: {at: "%s"}}}
"""


def _flow(*, use_first: bool = False, make_when: str = "", use_when: str = "",
          use: str = "{{ outputs.madeAt }}", steps: tuple[str, str, str] | None = None) -> str:
    """Record, then Make (makes outputs.madeAt) and Use (patches the VM with it), in that order
    unless ``use_first``; ``steps`` gives Record/Make/Use a step of spec.pipeline."""
    s = steps or ("", "", "")
    make = ("    - name: Make\n      cluster: source\n" + (f"      step: {s[1]}\n" if s[1] else "")
            + make_when + "      outputs:\n        madeAt: \"'now'\"\n"
            "      actions:\n        - wait: 0s\n")
    used = ("    - name: Use\n      cluster: source\n" + (f"      step: {s[2]}\n" if s[2] else "")
            + use_when + PATCH % use)
    body = used + make if use_first else make + used
    flow = RESTART.replace("    - name: Completed\n", body + "    - name: Completed\n")
    if steps:
        flow = flow.replace("  reads:\n", "  pipeline: [Initialize, Prepare, Cleanup]\n  reads:\n", 1)
        flow = flow.replace("    - name: Record\n      cluster: source\n",
                            f"    - name: Record\n      cluster: source\n      step: {s[0]}\n", 1)
    return flow


def _validate(tmp_path: Path, flow: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    plan_path = write_flow(tmp_path, flow)
    code = main(["validate", "--offline", str(plan_path)])
    return code, capsys.readouterr().err.strip().splitlines()


def test_an_output_made_after_its_use_is_one_error_at_file_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _validate(tmp_path, _flow(use_first=True), capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"{tmp_path / 'flow.yaml'}:19: spec.states[1].actions[0].patch.patch."
                             "metadata.labels.at: output outputs.madeAt comes from state 'Make', "
                             "which does not run before state 'Use' on every path"), err


def test_an_output_of_a_state_that_may_be_skipped_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _validate(tmp_path, _flow(make_when="      when: {all: [HasPreHook]}\n"), capsys)
    assert code == 2 and len(err) == 1, err
    assert "output outputs.madeAt comes from state 'Make'" in err[0] and "flow.yaml:" in err[0]


@pytest.mark.parametrize("kwargs", [
    {},  # Make always runs before Use
    {"make_when": "      when: {all: [HasPreHook]}\n",
     "use_when": "      when: {all: [HasPreHook]}\n"},  # both run for the same VMs
    {"make_when": "      when: {all: [HasPreHook]}\n",
     "use": "{{ outputs.madeAt if outputs.madeAt is defined else 'never' }}"},  # tested
    {"use_first": True, "use": "{{ outputs.madeAt | default('not yet') }}"},  # a default
])
def test_outputs_that_always_exist_or_are_tested_pass(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kwargs: dict[str, object]) -> None:
    code, err = _validate(tmp_path, _flow(**kwargs), capsys)  # type: ignore[arg-type]
    assert (code, err) == (0, [])


def test_smrun_run_refuses_an_output_order_mistake_before_anything_is_applied(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = write_flow(tmp_path, _flow(use_first=True))
    assert main(["run", str(plan_path), "--state-dir", str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err
    assert "outputs.madeAt comes from state 'Make'" in err
    assert not (tmp_path / "state" / "flow" / "journal.jsonl").exists()


def test_a_step_out_of_pipeline_order_is_one_warning_and_exit_0(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _validate(tmp_path, _flow(steps=("Initialize", "Cleanup", "Prepare")), capsys)
    assert code == 0 and len(err) == 1, err
    assert err[0] == (f"warning: {tmp_path / 'flow.yaml'}:25: spec.states[2].step: step 'Prepare' "
                      "of state 'Use' is out of pipeline order: state 'Make' before it has step "
                      "'Cleanup', a later step of spec.pipeline")
    # The itinerary file on its own warns the same way.
    assert main(["validate", str(tmp_path / "flow.yaml")]) == 0
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_steps_in_pipeline_order_do_not_warn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _validate(tmp_path, _flow(steps=("Initialize", "Prepare", "Prepare")), capsys) == (0, [])


def test_a_flow_with_a_step_out_of_order_still_runs_on_the_simulated_clusters(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = write_flow(tmp_path, _flow(steps=("Initialize", "Cleanup", "Prepare")))
    assert main(["run", str(plan_path), "--state-dir", str(tmp_path / "state")]) == 0
    assert "Completed" in capsys.readouterr().out


def test_the_built_in_itineraries_have_no_order_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parents[2]
    for name in ("cold", "warm", "live"):
        assert main(["validate", str(root / "itineraries" / f"{name}.yaml")]) == 0
    assert capsys.readouterr().err == ""
