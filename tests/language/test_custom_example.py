"""examples/custom (issue 15 item 1): a flow that is not a migration, run with ``smrun run``.

The flow backs up each VM's definition and state into a ConfigMap, restarts the VM and waits
until its new instance is Ready. The example plan runs as shipped (simulated clusters it starts
itself), and once more against simulated clusters the test keeps running, so that what it did
can be read back afterwards with kubectl: the ConfigMap's content, a new VMI (new uid) that is
Ready, and each VM's own runStrategy back in place.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine.cli import main
from statemachine.sim.cluster import SimulatedClusters
from tests.conftest import KUBECTL, run_kubectl

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom"


def _events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_the_custom_example_runs_as_shipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = EXAMPLE / "plan.yaml"
    assert main(["run", str(plan), "--state-dir", str(tmp_path / "state"), "--output", "json"]) == 0
    events = _events(capsys.readouterr().out)
    assert events[-1]["event"] == "run_finished"
    assert (events[-1]["completed"], events[-1]["failed"]) == (2, 0)
    states = [e["state"] for e in events if e["event"] == "state_entered" and e["vm"] == "shop/web-1"]
    assert states == ["BackUp", "StopVM", "StartVM"]
    # The flow is named by its itinerary: the plan writes no type.
    assert main(["status", str(plan), "--state-dir", str(tmp_path / "state"), "--output", "json"]) == 0
    rows = {r["vm"]: r for r in _events(capsys.readouterr().out)}
    assert rows["shop/web-1"]["phase"] == "Completed"
    assert rows["shop/db-1"]["outputs"]["backup"] == "db-1-backup"


@pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed (.ci/run installs it)")
def test_the_custom_flow_backs_up_restarts_and_waits_for_a_new_ready_vmi(
        make_sim: Callable[..., SimulatedClusters], tmp_path: Path) -> None:
    sim = make_sim(seed=EXAMPLE / "seed.yaml")
    assert sim.settle()
    cache = tmp_path / "kc-cache"
    cache.mkdir()

    def get(*args: str) -> Any:
        return json.loads(run_kubectl(sim, cache, "get", "-n", "shop", *args, "-o", "json").stdout)

    before = {n: get("vmi", n)["metadata"]["uid"] for n in ("web-1", "db-1")}

    folder = tmp_path / "custom"
    shutil.copytree(EXAMPLE, folder)
    plan = folder / "plan.yaml"
    text = plan.read_text()
    assert "  simulation:\n    seed: ./seed.yaml\n" in text
    plan.write_text(text.replace(
        "  simulation:\n    seed: ./seed.yaml\n",
        f"  source: {{kubeconfig: {sim.kubeconfig_path}, context: source}}\n"
        f"  target: {{kubeconfig: {sim.kubeconfig_path}, context: target}}\n"))
    assert main(["run", str(plan), "--state-dir", str(tmp_path / "state")]) == 0

    for name, strategy in (("web-1", "Always"), ("db-1", "RerunOnFailure")):
        backup = get("configmap", f"{name}-backup")
        data = backup["data"]
        assert data["vmiUID"] == before[name]
        assert (data["runStrategy"], data["vmiPhase"]) == (strategy, "Running")
        assert data["nodeName"]
        saved = yaml.safe_load(data["vm.yaml"])
        assert saved["metadata"]["name"] == name and saved["spec"]["runStrategy"] == strategy
        assert "status" not in saved and "uid" not in saved["metadata"]
        assert backup["metadata"]["labels"]["smrun.io/state"] == "BackUp"

        vmi = get("vmi", name)
        assert vmi["metadata"]["uid"] != before[name]
        assert vmi["status"]["phase"] == "Running"
        ready = [c for c in vmi["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"
        assert get("vm", name)["spec"]["runStrategy"] == strategy


def test_a_stopped_vm_is_refused_by_the_flows_preflight(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "custom"
    shutil.copytree(EXAMPLE, folder)
    seed = folder / "seed.yaml"
    seed.write_text(seed.read_text().replace("runStrategy: RerunOnFailure", "runStrategy: Halted"))
    assert main(["run", str(folder / "plan.yaml"), "--state-dir", str(tmp_path / "state")]) == 3
    err = capsys.readouterr()
    text = err.out + err.err
    assert "shop/db-1: VMRunning: VM shop/db-1 is not running: nothing to restart" in text
    assert "RestartableRunStrategy" in text and "runStrategy Halted would not start" in text
