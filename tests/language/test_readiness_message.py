"""A wait's own message (issue 15 item 4): readiness ``message`` (a template over the context and
``object``) is what the user reads while waiting, on failure and on time-out, with the observed
values instead of the raw expression."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from statemachine.cli import main
from tests.language.conftest import RESTART, write_flow

WAIT = RESTART.replace("""    - name: Completed
""", """    - name: WaitForReport
      cluster: source
      readiness:
        object: {apiVersion: v1, kind: ConfigMap, namespace: "{{ vm.namespace }}", name: "{{ vm.name }}-report"}
        ready: "object.data.done == 'yes'"
        failed: "object.data.flow == 'broken'"
        message: "report {{ object.metadata.name }} of {{ vm.name }} is not done yet"
        timeout: 3s
    - name: Completed
""")


def _run(tmp_path: Path, make_sim: Any, flow: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    plan_path = write_flow(tmp_path, flow)
    sim = make_sim(seed=tmp_path / "seed.yaml")
    plan_path.write_text(plan_path.read_text().replace(
        "  simulation: {seed: ./seed.yaml}\n",
        f"  source: {{kubeconfig: {sim.kubeconfig_path}, context: source}}\n"
        f"  target: {{kubeconfig: {sim.kubeconfig_path}, context: target}}\n"))
    code = main(["run", str(plan_path), "--state-dir", str(tmp_path / "state")])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_the_message_is_shown_while_waiting_and_on_time_out(
        tmp_path: Path, make_sim: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(tmp_path, make_sim, WAIT, capsys)
    assert code == 1, text
    waiting = [line for line in text.splitlines() if "WaitForReport" in line and "not done yet" in line]
    assert waiting, text
    assert "report web-1-report of web-1 is not done yet" in text
    timed_out = [line for line in text.splitlines() if "timed out after 3s" in line]
    assert timed_out and "report web-1-report of web-1 is not done yet (object.data.done = " in timed_out[0], text
    assert "object.data.done == 'yes'" not in text  # the raw expression is not what users read


def test_the_message_is_shown_when_the_wait_fails(
        tmp_path: Path, make_sim: Any, capsys: pytest.CaptureFixture[str]) -> None:
    flow = WAIT.replace("object.data.flow == 'broken'", "object.data.flow == 'restart'")
    code, text = _run(tmp_path, make_sim, flow, capsys)
    assert code == 1, text
    assert "failed: report web-1-report of web-1 is not done yet (object.data.flow = 'restart')" in text, text


def test_a_message_with_a_template_error_is_refused_by_validate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = write_flow(tmp_path, WAIT.replace("is not done yet", "is {{ not done"))
    assert main(["validate", "--offline", str(plan_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "spec.states[1].readiness.message" in err[0], err
