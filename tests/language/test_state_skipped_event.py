"""``--output json`` emits ``state_skipped`` for a state its predicates switch off (issue 15
item 7), run against the simulated clusters through their kubeconfig."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from statemachine.cli import main
from tests.language.conftest import RESTART, write_flow

FLOW = RESTART.replace("""    - name: Record
""", """    - name: PreHook
      when: {all: [HasPreHook]}
      actions: [{wait: 0s}]
    - name: Record
""")


def test_a_skipped_state_is_an_event_in_json_output(tmp_path: Path, make_sim: Any,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = write_flow(tmp_path, FLOW)
    sim = make_sim(seed=tmp_path / "seed.yaml")
    plan_path.write_text(plan_path.read_text().replace(
        "  simulation: {seed: ./seed.yaml}\n",
        f"  source: {{kubeconfig: {sim.kubeconfig_path}, context: source}}\n"
        f"  target: {{kubeconfig: {sim.kubeconfig_path}, context: target}}\n"))
    assert main(["run", str(plan_path), "--output", "json", "--state-dir", str(tmp_path / "s")]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    skipped = [e for e in events if e["event"] == "state_skipped"]
    assert [(e["vm"], e["state"], e["message"]) for e in skipped] == \
        [("shop/web-1", "PreHook", "skipped: HasPreHook is false")]
    kinds = [e["event"] for e in events if e.get("vm") == "shop/web-1"]
    assert kinds.index("state_skipped") < kinds.index("state_entered")  # before Record runs
