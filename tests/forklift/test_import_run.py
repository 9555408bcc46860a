"""The imported live, cold and warm plans run on the simulated clusters.

The admin's way to rehearse an imported plan: ``smrun import forklift FILE --simulation SEED``
writes the same plan with ``spec.simulation`` instead of cluster references (no credentials
are written), and ``smrun run`` moves the VMs between simulated clusters seeded with SEED. The
seeds are the examples' (examples/*/seed.yaml), which hold the VMs, storage classes and networks
the Forklift object sets of tests/data/forklift name.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.forklift.conftest import DATA, EXAMPLES, run_import

pytestmark = pytest.mark.slow


def _run(plan: Path, tmp_path: Path) -> tuple[int, list[dict[str, Any]], str]:
    proc = subprocess.run([sys.executable, "-m", "statemachine", "run", str(plan), "--output", "json",
                           "--state-dir", str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events, proc.stderr


@pytest.mark.parametrize("name, example, vms", [
    ("live", "live", ("shop/web-1", "shop/web-2", "shop/db-1")),
    ("cold", "cold", ("shop/web-1", "shop/db-1", "shop/batch-1")),
    ("warm", "warm", ("ledger/ledger-1", "ledger/ledger-2")),
])
def test_imported_plan_runs_on_simulated_clusters(name: str, example: str, vms: tuple[str, ...],
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = tmp_path / "seed.yaml"
    shutil.copy(EXAMPLES / example / "seed.yaml", seed)
    plan = tmp_path / "plan.yaml"
    code, _, stderr = run_import(capsys, str(DATA / f"{name}.yaml"), "-o", str(plan), "--simulation", str(seed))
    assert code == 0, stderr
    code, events, stderr = _run(plan, tmp_path)
    assert code == 0, stderr
    succeeded = {e["vm"] for e in events if e["event"] == "vm_succeeded" and e["vm"]}  # "": plan setup
    assert succeeded == set(vms)
    assert events[-1]["event"] == "run_finished"
    if name == "live":
        # The imported PreHook ran for db-1 only, with the playbook written next to the plan.
        hooked = {e["vm"] for e in events if e["event"] == "state_completed" and e["state"] == "PreHook"}
        assert hooked == {"shop/db-1"}
    if name == "warm":
        # The Migration's cutover (already past) cut each VM over right after its first precopy
        # round: no wait for a next round.
        entered = [e for e in events if e["event"] == "state_entered"]
        for vm in vms:
            states = [e["state"] for e in entered if e["vm"] == vm]
            assert "StopSource" in states and "PrecopyWait" not in states, states
