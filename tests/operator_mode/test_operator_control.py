"""Controlling a running Plan through the API (issue 12 item 6): moving a warm cutover on the live
object, with `smrun cutover --cluster` and `smrun status --cluster`, against an `smrun operator`
subprocess on the simulated clusters.

(Cancel by `spec.cancel` and delete during a run are in test_operator_e2e.py:
test_spec_cancel_undoes_the_run, test_deleting_a_plan_undoes_before_the_finalizer_goes.)
"""
from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine.operator.crd import plan_crd
from statemachine.sim.cluster import SimulatedClusters
from tests.operator_mode.test_operator_e2e import NS, SMRUN, Operator
from tests.warm.harness import EXAMPLE_PLAN as WARM_PLAN
from tests.warm.harness import start_sim

pytestmark = pytest.mark.slow


@pytest.fixture
def warm_operator(make_sim: Callable[..., SimulatedClusters], monkeypatch: pytest.MonkeyPatch,
                  tmp_path: Path) -> Iterator[Operator]:
    sim = start_sim(make_sim, monkeypatch)
    op = Operator(sim, tmp_path)
    op.apply(plan_crd())
    op.kubectl("wait", "--for=condition=Established", "crd/plans.smrun.io", "--timeout=10s")
    op.kubectl("create", "namespace", NS)
    try:
        yield op
    finally:
        op.stop()


def warm_plan_object(kubeconfig: Path, vms: list[str]) -> dict[str, Any]:
    """The warm example as a Plan object, with no cutover of its own: no round limit and no
    automatic cutover, so its precopy loop never ends unless the cutover is moved."""
    plan = yaml.safe_load(WARM_PLAN.read_text())
    plan["metadata"] = {"name": "warm-demo", "namespace": NS}
    spec = plan["spec"]
    del spec["simulation"]
    spec["source"] = {"kubeconfig": str(kubeconfig), "context": "source"}
    spec["target"] = {"kubeconfig": str(kubeconfig), "context": "target"}
    for key in ("autoCutoverDeltaBytes", "maxPrecopyRounds"):
        spec["settings"].pop(key)
    spec["settings"]["precopyInterval"] = "1s"
    spec["vms"] = [v for v in spec["vms"] if v["name"] in vms]
    return dict(plan)


def smrun_on_cluster(op: Operator, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SMRUN, args[0], "--cluster", "target", "--kubeconfig",
                           str(op.sim.kubeconfig_path), "-n", NS, *args[1:]],
                          capture_output=True, text=True, timeout=120, cwd=op.tmp)


def test_moving_spec_cutover_moves_the_running_engines_cutover(warm_operator: Operator) -> None:
    op = warm_operator
    op.apply(warm_plan_object(op.sim.kubeconfig_path, ["ledger-2"]))
    op.start("replica-a")
    # A precopy round done (the loop would go on forever), then the cutover is moved to now.
    deadline = time.monotonic() + 180
    seen: list[str] = []
    while time.monotonic() < deadline:
        rows = (op.plan("warm-demo").get("status") or {}).get("vms") or []
        state = rows[0].get("state") if rows else ""
        if not seen or seen[-1] != state:
            seen.append(str(state))
        if seen.count("PrecopyWait") >= 1:
            break
        time.sleep(0.1)
    assert seen.count("PrecopyWait") >= 1, seen
    running = op.plan("warm-demo")
    assert running["status"]["phase"] == "Running"
    status = smrun_on_cluster(op, "status", "warm-demo", "--output", "json")
    assert status.returncode == 0, status.stderr
    row = json.loads(status.stdout)
    assert row["vm"] == "ledger/ledger-2" and row["phase"] == "Running", row
    assert row["run"] == running["status"]["run"]

    moved = smrun_on_cluster(op, "cutover", "warm-demo", "--at", "now")
    assert moved.returncode == 0, moved.stderr
    assert op.plan("warm-demo")["spec"]["cutover"].endswith("Z")
    obj = op.wait_phase("warm-demo", ("Succeeded", "Failed", "Canceled"), timeout=180)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    # The change was taken by the running run: its status observes the new generation, so no
    # second run starts for it.
    assert obj["metadata"]["generation"] > running["metadata"]["generation"]
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    source = op.kubectl("get", "vm", "ledger-2", "-n", "ledger", "-o", "json", context="source")
    assert json.loads(source.stdout)["spec"]["runStrategy"] == "Halted"
    target = op.kubectl("get", "vm", "ledger-2", "-n", "ledger", "-o", "json")
    assert json.loads(target.stdout)["metadata"]["labels"]["smrun.io/plan"]
    log = (op.tmp / "operator-replica-a.log").read_text()
    assert "Traceback" not in log
    final = smrun_on_cluster(op, "status", "warm-demo", "--output", "json")
    assert json.loads(final.stdout)["phase"] == "Completed"
