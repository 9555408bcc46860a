"""Helpers for the warm itinerary's end-to-end tests: simulated clusters started in the test
process from the example's seed, and ``smrun`` run as a subprocess against them.

The simulator does not model ``startStrategy: Paused`` (a VMI started paused reports condition
``Paused=True``), which the restartPaused cutover waits for, nor the VMI ``pause`` subresource the
pause cutover calls. :class:`PausedStart` and :class:`PauseSubresource` stand in for those pieces
of KubeVirt, added to the simulated clusters' controllers by :func:`start_sim` until the simulator
has them; they only act on VMIs that asked for a paused start, and on the pause Job's VMI.
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

from statemachine.sim.controller import ClusterContext, Controller
from statemachine.sim.controllers.conditions import get_condition, set_condition
from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.store import Obj

from polling import wait_for
from upstream import upstream_dir

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PLAN = REPO / "examples" / "warm" / "plan.yaml"
SMRUN = [sys.executable, "-m", "statemachine"]
RUN_TIMEOUT = 240


class PausedStart(Controller):
    """A running VMI whose spec has ``startStrategy: Paused`` gets condition ``Paused=True``."""

    watches = ("VirtualMachineInstance",)

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        spec = obj.get("spec") or {}
        status = dict(obj.get("status") or {})
        if spec.get("startStrategy") != "Paused" or status.get("phase") != "Running" \
                or get_condition(status, "Paused") is not None:
            return None
        set_condition(status, "Paused", "True", "PausedByUser", "VMI was paused by user")
        md = obj["metadata"]
        ctx.store.update_status("VirtualMachineInstance", md.get("namespace"), md["name"], status)
        return None


class PauseSubresource(Controller):
    """The effect of ``PUT .../virtualmachineinstances/<name>/pause`` (which the simulated API
    server does not serve): when the warm itinerary's pause Job (``VMI_PATH`` env) completes, the
    VMI it names gets condition ``Paused=True``."""

    watches = ("Job",)

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        conditions = (obj.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Complete" and c.get("status") == "True" for c in conditions):
            return None
        containers = ((obj["spec"].get("template") or {}).get("spec") or {}).get("containers") or []
        paths = [e.get("value", "") for c in containers for e in c.get("env") or []
                 if e.get("name") == "VMI_PATH"]
        if not paths or not paths[0].endswith("/pause"):
            return None
        parts = paths[0].split("/")
        ns, name = parts[parts.index("namespaces") + 1], parts[-2]
        vmi = ctx.store.try_get("VirtualMachineInstance", ns, name)
        if vmi is None or get_condition(vmi.get("status"), "Paused") is not None:
            return None
        status = dict(vmi.get("status") or {})
        set_condition(status, "Paused", "True", "PausedByUser", "VMI was paused by user")
        ctx.store.update_status("VirtualMachineInstance", ns, name, status)
        return None


def start_sim(make_sim: Callable[..., SimulatedClusters], monkeypatch: pytest.MonkeyPatch,
              plan_file: Path = EXAMPLE_PLAN, tick: float = 0.02) -> SimulatedClusters:
    from statemachine.sim import cluster
    from statemachine.sim.controller import load_controllers

    # cluster.py calls the name it imported: patch that one.
    monkeypatch.setattr(cluster, "load_controllers", lambda: [*load_controllers(), PausedStart(),
                                                        PauseSubresource()])
    plan = yaml.safe_load(plan_file.read_text())
    seed = (plan_file.parent / plan["spec"]["simulation"]["seed"]).resolve()
    sim = make_sim(seed=seed, openapi_dir=upstream_dir(), tick=tick)
    # The seeded VMs start like real ones (a few ticks): warm needs them running with changed
    # block tracking Enabled before preflight looks.
    store = sim.store("source")

    def ready() -> bool:
        vms = store.list("VirtualMachine")
        return bool(vms) and all(
            (vm.get("status") or {}).get("printableStatus") == "Running"
            and ((vm.get("status") or {}).get("changedBlockTracking") or {}).get("state") == "Enabled"
            for vm in vms)
    wait_for(ready, timeout=30, what="the seeded source VMs to run with CBT Enabled")
    return sim


def plan_against(sim: SimulatedClusters, tmp_path: Path, *, plan_file: Path = EXAMPLE_PLAN,
                 settings: dict[str, Any] | None = None, spec: dict[str, Any] | None = None,
                 vms: list[str] | None = None) -> Path:
    """A copy of the example plan aimed at the running simulator, with changes."""
    plan = yaml.safe_load(plan_file.read_text())
    plan["spec"].pop("simulation")
    plan["spec"]["source"] = {"kubeconfig": str(sim.kubeconfig_path), "context": "source"}
    plan["spec"]["target"] = {"kubeconfig": str(sim.kubeconfig_path), "context": "target"}
    for key, value in (settings or {}).items():  # None: the setting is removed (its default)
        if value is None:
            plan["spec"]["settings"].pop(key, None)
        else:
            plan["spec"]["settings"][key] = value
    plan["spec"].update(spec or {})
    if vms is not None:
        plan["spec"]["vms"] = [v for v in plan["spec"]["vms"] if v["name"] in vms]
    out = tmp_path / "plan.yaml"
    out.write_text(yaml.safe_dump(plan))
    return out


def smrun(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SMRUN, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          cwd=cwd, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def popen(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*SMRUN, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=cwd, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def journal(state_dir: Path, plan: str) -> list[dict[str, Any]]:
    path = state_dir / plan / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def get(sim: SimulatedClusters, cluster: str, kind: str, ns: str, name: str) -> Any:
    return sim.store(cluster).try_get(kind, ns, name)


def by_plan(sim: SimulatedClusters, cluster: str, kind: str, plan: str) -> list[Any]:
    return list(sim.store(cluster).list(kind, label_selector=f"smrun.io/plan={plan}"))
