"""Helpers for the warm itinerary's end-to-end tests: simulated clusters started in the test
process from the example's seed, and ``smrun`` run as a subprocess against them.

Paused starts and the pause subresource are simulated by ``statemachine.sim.controllers.pause``.
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

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PLAN = REPO / "examples" / "warm" / "plan.yaml"
SMRUN = [sys.executable, "-m", "statemachine"]
RUN_TIMEOUT = 240


def start_sim(make_sim: Callable[..., SimulatedClusters], monkeypatch: pytest.MonkeyPatch,
              plan_file: Path = EXAMPLE_PLAN, tick: float = 0.02) -> SimulatedClusters:
    plan = yaml.safe_load(plan_file.read_text())
    seed = (plan_file.parent / plan["spec"]["simulation"]["seed"]).resolve()
    sim = make_sim(seed=seed, tick=tick)
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


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def journal(state_dir: Path, plan: str) -> list[dict[str, Any]]:
    path = state_dir / plan / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def get(sim: SimulatedClusters, cluster: str, kind: str, ns: str, name: str) -> Any:
    return sim.store(cluster).try_get(kind, ns, name)


def by_plan(sim: SimulatedClusters, cluster: str, kind: str, plan: str) -> list[Any]:
    return list(sim.store(cluster).list(kind, label_selector=f"smrun.io/plan={plan}"))
