"""The cold itinerary end to end: ``smrun run`` (a subprocess, the real client) against the simulator.

The clusters are started by the test (``make_sim``) from the example's seed so that their state
can be inspected after the run; the plan is the example's with ``spec.source``/``spec.target``
pointing at the simulator's kubeconfig instead of ``spec.simulation``. One test also runs the
example plan itself (its simulator lives inside ``smrun``) and checks the exit code and events.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine.sim.cluster import SimulatedClusters
from polling import wait_for
from processes import cancel_at_event, kill_at_event


from .offline import DATA, EXAMPLE_PLAN

pytestmark = pytest.mark.slow

SMRUN = [sys.executable, "-m", "statemachine"]
RUN_TIMEOUT = 240



def _wait_for(check: Callable[[], Any], timeout: float = 20) -> Any:
    """``polling.wait_for`` with these end-to-end tests' 20 s (a whole migration may run first)."""
    return wait_for(check, timeout)

def _plan_against(sim: SimulatedClusters, plan_file: Path, tmp_path: Path) -> Path:
    """A copy of ``plan_file`` that targets the running simulator instead of its own seed."""
    plan = yaml.safe_load(plan_file.read_text())
    seed = (plan_file.parent / plan["spec"].pop("simulation")["seed"]).resolve()
    assert seed.exists()
    plan["spec"]["source"] = {"kubeconfig": str(sim.kubeconfig_path), "context": "source"}
    plan["spec"]["target"] = {"kubeconfig": str(sim.kubeconfig_path), "context": "target"}
    out = tmp_path / f"{plan_file.stem}-live.yaml"
    out.write_text(yaml.safe_dump(plan))
    return out


def _start(make_sim: Callable[..., SimulatedClusters], plan_file: Path) -> SimulatedClusters:
    plan = yaml.safe_load(plan_file.read_text())
    seed = (plan_file.parent / plan["spec"]["simulation"]["seed"]).resolve()
    return make_sim(seed=seed, tick=0.02)


def _smrun(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SMRUN, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          cwd=cwd, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _get(sim: SimulatedClusters, cluster: str, kind: str, ns: str, name: str) -> Any:
    return sim.store(cluster).try_get(kind, ns, name)


def _by_plan(sim: SimulatedClusters, cluster: str, kind: str, plan: str) -> list[Any]:
    return sim.store(cluster).list(kind, label_selector=f"smrun.io/plan={plan}")


def test_example_plan_runs_to_completion(tmp_path: Path) -> None:
    proc = _smrun("run", str(EXAMPLE_PLAN), "--output", "json", "--state-dir",
                  str(tmp_path / "state"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    events = _events(proc.stdout)
    finished = [e for e in events if e["event"] == "vm_succeeded"]
    assert sorted(e["vm"] for e in finished) == ["shop/batch-1", "shop/db-1", "shop/web-1"]
    # The import's progress (CDI status.progress) is reported while the DataVolumes copy.
    progress = [e.get("progress") for e in events
                if e["event"] == "state_waiting" and e.get("state") == "CreateDataVolumes"]
    assert any(p and p.endswith("%") for p in progress), progress


def test_cold_migration_end_state(make_sim: Callable[..., SimulatedClusters], tmp_path: Path) -> None:
    sim = _start(make_sim, EXAMPLE_PLAN)
    plan = _plan_against(sim, EXAMPLE_PLAN, tmp_path)
    proc = _smrun("run", str(plan), "--output", "json", "--state-dir", str(tmp_path / "state"),
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    expected = {"web-1": "Always", "db-1": "Always", "batch-1": "Halted"}
    for name, strategy in expected.items():
        target = _get(sim, "target", "VirtualMachine", "shop", name)
        assert target is not None, name
        assert target["spec"]["runStrategy"] == strategy
        if strategy == "Always":
            assert _wait_for(lambda: (_get(sim, "target", "VirtualMachine", "shop", name)
                                      .get("status", {}).get("printableStatus")) == "Running"), name
        source = _get(sim, "source", "VirtualMachine", "shop", name)
        assert source["spec"]["runStrategy"] == "Halted", name
        assert _get(sim, "source", "VirtualMachineInstance", "shop", name) is None
    dvs = {dv["metadata"]["name"]: dv for dv in _by_plan(sim, "target", "DataVolume", "cold-demo")}
    assert set(dvs) == {"web-1-root", "db-1-root", "db-1-data", "batch-1-root"}
    for name, dv in dvs.items():
        assert dv["status"]["phase"] == "Succeeded", name
        assert "/virtualmachineexports/" in dv["spec"]["source"]["http"]["url"], name
    assert sim.store("source").list("VirtualMachineExport") == []
    # The token copies are cleaned up with the exports; the copied cloud-init Secret stays.
    assert _get(sim, "target", "Secret", "shop", "web-1-export-token") is None
    assert _get(sim, "target", "Secret", "shop", "web-1-cloudinit") is not None


def test_failed_import_undoes_that_vm_only(make_sim: Callable[..., SimulatedClusters],
                                           tmp_path: Path) -> None:
    plan_file = DATA / "fail-plan.yaml"
    sim = _start(make_sim, plan_file)
    plan = _plan_against(sim, plan_file, tmp_path)
    proc = _smrun("run", str(plan), "--output", "json", "--state-dir", str(tmp_path / "state"),
                  cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    events = _events(proc.stdout)
    assert [e["vm"] for e in events if e["event"] == "vm_failed"] == ["shop/web-1"]
    assert [e["vm"] for e in events if e["event"] == "vm_succeeded"] == ["shop/web-2"]

    # web-1: nothing left on the target, no export, the source runs again.
    assert _get(sim, "target", "VirtualMachine", "shop", "web-1") is None
    assert _get(sim, "target", "DataVolume", "shop", "web-1-root") is None
    assert _get(sim, "target", "Secret", "shop", "web-1-export-token") is None
    assert _get(sim, "source", "VirtualMachineExport", "shop", "web-1") is None
    assert _get(sim, "source", "VirtualMachine", "shop", "web-1")["spec"]["runStrategy"] == "Always"
    assert _wait_for(lambda: (_get(sim, "source", "VirtualMachine", "shop", "web-1")
                              .get("status", {}).get("printableStatus")) == "Running")
    # web-2 migrated.
    assert _get(sim, "target", "DataVolume", "shop", "web-2-root")["status"]["phase"] == "Succeeded"
    assert _get(sim, "target", "VirtualMachine", "shop", "web-2")["spec"]["runStrategy"] == "Always"
    assert _get(sim, "source", "VirtualMachine", "shop", "web-2")["spec"]["runStrategy"] == "Halted"


def test_kill_during_import_then_rerun(make_sim: Callable[..., SimulatedClusters],
                                       tmp_path: Path) -> None:
    sim = _start(make_sim, EXAMPLE_PLAN)
    plan = _plan_against(sim, EXAMPLE_PLAN, tmp_path)
    state = tmp_path / "state"
    cmd = [*SMRUN, "run", str(plan), "--output", "json", "--state-dir", str(state)]
    assert kill_at_event(cmd, event="state_waiting", state="CreateDataVolumes", cwd=tmp_path,
                         env=dict(os.environ, PYTHONUNBUFFERED="1")), \
        "the run ended before any DataVolume import was seen"

    again = _smrun("run", str(plan), "--output", "json", "--state-dir", str(state), cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    dvs = _by_plan(sim, "target", "DataVolume", "cold-demo")
    assert sorted(dv["metadata"]["name"] for dv in dvs) == ["batch-1-root", "db-1-data",
                                                           "db-1-root", "web-1-root"]
    assert len(_by_plan(sim, "target", "VirtualMachine", "cold-demo")) == 3
    assert sim.store("source").list("VirtualMachineExport") == []


def test_cancel_during_import_restores_the_source(make_sim: Callable[..., SimulatedClusters],
                                                  tmp_path: Path) -> None:
    plan_file = EXAMPLE_PLAN
    seed = (plan_file.parent / "seed.yaml").resolve()
    sim = make_sim(seed=seed, tick=0.4)  # a slow import (seconds), so the cancel lands during it
    plan = _plan_against(sim, plan_file, tmp_path)
    state = tmp_path / "state"
    cmd = [*SMRUN, "run", str(plan), "--vm", "web-1", "--output", "json", "--state-dir", str(state)]
    cancel = [*SMRUN, "cancel", str(plan), "--vm", "web-1", "--state-dir", str(state)]
    code, events, done = cancel_at_event(cmd, cancel, event="state_waiting",
                                         state="CreateDataVolumes", cwd=tmp_path,
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"),
                                         timeout=RUN_TIMEOUT)
    assert done is not None and done.returncode == 0, done and done.stderr
    assert code == 1
    assert [e["vm"] for e in events if e.get("event") == "vm_canceled"] == ["shop/web-1"]
    assert _get(sim, "target", "VirtualMachine", "shop", "web-1") is None
    assert _by_plan(sim, "target", "DataVolume", "cold-demo") == []
    assert _get(sim, "source", "VirtualMachineExport", "shop", "web-1") is None
    assert _get(sim, "source", "VirtualMachine", "shop", "web-1")["spec"]["runStrategy"] == "Always"
    assert _wait_for(lambda: (_get(sim, "source", "VirtualMachine", "shop", "web-1")
                              .get("status", {}).get("printableStatus")) == "Running")


def test_older_vm_shape_and_diskless_vm(make_sim: Callable[..., SimulatedClusters],
                                        tmp_path: Path) -> None:
    """``running: true`` + dataVolumeTemplates + namespaced instancetype, and a container-disk VM
    whose export is Skipped (nothing to import)."""
    plan_file = DATA / "variants-plan.yaml"
    sim = _start(make_sim, plan_file)
    # Someone else's objects with the names of the import Secret/CA of the diskless VM (which
    # smrun never creates for it): the cleanup must leave them alone.
    sim.store("target").create("Secret", {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "app-2-export-token", "namespace": "apps"}, "data": {"k": "dg=="}})
    sim.store("target").create("ConfigMap", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "app-2-export-ca", "namespace": "apps"}, "data": {"k": "v"}})
    plan = _plan_against(sim, plan_file, tmp_path)
    proc = _smrun("run", str(plan), "--output", "json", "--state-dir", str(tmp_path / "state"),
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    events = _events(proc.stdout)
    entered = {e["state"] for e in events if e.get("vm") == "apps/app-2"
               and e["event"] == "state_entered"}
    assert "CreateDataVolumes" not in entered and "CreateExport" in entered

    app1 = _get(sim, "target", "VirtualMachine", "apps", "app-1")
    assert app1["spec"]["runStrategy"] == "Always" and "running" not in app1["spec"]
    assert app1["spec"]["instancetype"] == {"kind": "VirtualMachineInstancetype", "name": "small"}
    assert _get(sim, "target", "VirtualMachineInstancetype", "apps", "small") is not None
    assert _get(sim, "target", "ConfigMap", "apps", "app-1-config") is not None
    assert _get(sim, "source", "VirtualMachine", "apps", "app-1")["spec"]["runStrategy"] == "Halted"
    assert _wait_for(lambda: (_get(sim, "target", "VirtualMachine", "apps", "app-2")
                              .get("status", {}).get("printableStatus")) == "Running")
    assert [dv["metadata"]["name"] for dv in _by_plan(sim, "target", "DataVolume", "cold-variants")] \
        == ["app-1-root"]
    assert sim.store("source").list("VirtualMachineExport") == []
    assert _get(sim, "target", "Secret", "apps", "app-2-export-token")["data"] == {"k": "dg=="}
    assert _get(sim, "target", "ConfigMap", "apps", "app-2-export-ca")["data"] == {"k": "v"}


def test_preflight_refuses_collisions_and_gaps_before_anything_runs(tmp_path: Path) -> None:
    proc = _smrun("validate", str(DATA / "collision-plan.yaml"), cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    output = proc.stdout + proc.stderr
    # (DisksAreBound is checked offline only: the simulator may bind the seeded Pending PVC
    # before preflight reads it.)
    for rule in ("StorageMapped", "NetworkMapped", "TargetVMNameFree",
                 "TargetDataVolumeNamesFree", "TargetClaimNamesFree", "ClusterPreferencePresent"):
        assert f"shop/web-1: {rule}: " in output, rule
    assert "Traceback" not in output
